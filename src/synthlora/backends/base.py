"""The small interfaces every model-backed stage talks to, and the shared device choice.

Backends are chosen in config (``<stage>.backend``) and built by ``synthlora.backends.make_*``.
Later backends (``openai`` for analyze/caption/generate, ``folder`` for bring-your-own renders)
implement the same protocols.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from PIL import Image


class ShotFailed(RuntimeError):
    """Raised by a generator when this shot produced no image (refused by moderation, or still
    failing after retries) but other shots may succeed: the shot is recorded as failed."""

    def __init__(self, reason: str, request_id: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.request_id = request_id


class Analyzer(Protocol):
    def analyze(self, reference: Path, description: str, instruction: str, schema: dict,
                attempt: int = 0) -> str:
        """Return the character's features as JSON text (validated by the caller)."""


class Generator(Protocol):
    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        """Return the image for ``shot`` and provenance fields to record beside it."""


class Captioner(Protocol):
    def tag(self, image: Image.Image, vocabulary: dict[str, list[str]], instruction: str) -> dict[str, str]:
        """Return one tag per vocabulary category, each a member of that category's list."""


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(name: str, device: str, half: str = "float16"):
    """A config dtype name → torch dtype; 'auto' is half precision on a GPU, float32 elsewhere."""
    import torch

    if name == "auto":
        name = half if device.startswith("cuda") else "float32"
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class ModelNotFound(OSError):
    pass


def load_pretrained(loader, model: str, key: str, **kwargs):
    """loader.from_pretrained(model), with the error a newcomer needs when the model is missing: which
    config key named it, and that it is neither a local folder nor on the Hub or in its cache."""
    try:
        return loader.from_pretrained(model, **kwargs)
    except OSError as exc:
        if Path(model).is_dir():
            raise  # the folder exists: its own error (a missing file in it) says more
        raise ModelNotFound(
            f"{key} = {model!r}: no such local folder, and no model of that name could be loaded from the "
            f"Hugging Face Hub or its local cache ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"Download it first (e.g. `hf download {model}` on a machine with network, or copy the folder "
            f"here), or set {key} to the model's folder.") from exc


def load_sd_pipeline(model: str, key: str, *, pipeline=None, family: str | None = None,
                     single_file: dict | None = None, v_parameterization: bool = False,
                     zero_terminal_snr: bool = False, **kwargs):
    """A text-to-image pipeline from whatever names the base model: a single-file SDXL / SD1.5
    checkpoint (loaded offline, synthlora.single_file), a diffusers folder or a hub id (``pipeline``,
    default AutoPipelineForText2Image); its scheduler set for the base's prediction type. A plain
    function: nothing global changes, so a long-lived process may call it for many models."""
    from synthlora.single_file import is_single_file, load_single_file, prediction_scheduler

    if is_single_file(model):
        pipe = load_single_file(model, key, family=family, options=single_file, **kwargs)
    else:
        if pipeline is None:
            from diffusers import AutoPipelineForText2Image as pipeline
        pipe = load_pretrained(pipeline, model, key, **kwargs)
    pipe.scheduler = prediction_scheduler(pipe.scheduler, v_parameterization, zero_terminal_snr)
    return pipe
