"""``generate`` backend: a local diffusers text-to-image pipeline (SDXL, SD1.5, or the demo's tiny SDXL).

SD1.5's and SDXL's CLIP text encoders read 77 tokens (75 of text between the start and end
tokens); the pipelines cut the rest with a warning. A character's prompt is longer, so the
text is encoded as A1111 and ComfyUI do: split into 75-token chunks at phrase boundaries, each
chunk encoded on its own (start + text + end, padded to 77), the hidden states concatenated along
the sequence; SDXL's pooled embedding is the first chunk's. A prompt of at most 75 tokens is one
chunk, encoded exactly as the pipeline itself would encode it. Nothing is cut.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from PIL import Image

from synthlora.backends.base import load_sd_pipeline, resolve_device, resolve_dtype

# Pipelines whose text encoders are CLIP with a 77-token window and whose ``encode_prompt`` this
# backend calls per chunk; any other pipeline gets the prompt text as it is.
CHUNKED_PIPELINES = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")


def prompt_chunks(text: str, count_tokens: Callable[[str], int], limit: int = 75) -> list[str]:
    """``text`` split into pieces of at most ``limit`` tokens each, cut after a comma, semicolon or
    full stop where possible (so a phrase stays in one chunk), else between words. Always at least
    one chunk (an empty prompt is one empty chunk)."""
    phrases = [p for p in re.split(r"(?<=[,;.])\s+", " ".join(text.split())) if p]
    pieces: list[str] = []
    for phrase in phrases:
        pieces += [phrase] if count_tokens(phrase) <= limit else _split_long(phrase, count_tokens, limit)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and count_tokens(f"{chunks[-1]} {piece}") <= limit:
            chunks[-1] = f"{chunks[-1]} {piece}"
        else:
            chunks.append(piece)
    return chunks or [""]


def _split_long(phrase: str, count_tokens: Callable[[str], int], limit: int) -> list[str]:
    """A phrase over the limit, packed word by word (a single over-long word, character by character)."""
    out: list[str] = []
    for word in phrase.split():
        if count_tokens(word) > limit:
            parts, current = [], ""
            for ch in word:
                if current and count_tokens(current + ch) > limit:
                    parts.append(current)
                    current = ""
                current += ch
            out += parts + [current]
        elif out and count_tokens(f"{out[-1]} {word}") <= limit:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out


class DiffusersGenerator:
    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", model_options: dict | None = None,
                 **_pixel_options):
        """``model_options``: how the model loads (synthlora.single_file.model_options: single-file
        components, v-prediction)."""
        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.pipe = load_sd_pipeline(model, "generate.model", dtype=torch_dtype, **(model_options or {})).to(self.device)
        self.pipe.set_progress_bar_config(desc="denoise", leave=False)
        self.model = model

    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        import torch

        generator = torch.Generator("cpu").manual_seed(int(shot["seed"]))
        info: dict[str, Any] = {"pipeline": type(self.pipe).__name__, "device": self.device}
        # A shot planned before chunked encoding (no prompt_encoding in its key) is rendered as it was.
        if shot.get("prompt_encoding") and type(self.pipe).__name__ in CHUNKED_PIPELINES:
            text, text_info = self.encode(shot["prompt"], shot["negative_prompt"])
            info.update(text_info)
        else:
            text = {"prompt": shot["prompt"], "negative_prompt": shot["negative_prompt"] or None}
        image = self.pipe(
            **text,
            num_inference_steps=int(shot["steps"]),
            guidance_scale=float(shot["guidance_scale"]),
            width=int(shot["width"]),
            height=int(shot["height"]),
            generator=generator,
        ).images[0]
        return image, info

    def count_tokens(self, text: str) -> int:
        # verbose=False: a long prompt is expected here, not the 'indexing errors' the tokenizer warns of
        return len(self.pipe.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def encode(self, prompt: str, negative_prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Pipeline keyword arguments with the prompt and negative prompt encoded chunk by chunk,
        and what the provenance records about it (token count, chunks)."""
        import torch

        limit = self.pipe.tokenizer.model_max_length - 2
        chunks = prompt_chunks(prompt, self.count_tokens, limit)
        # SDXL leaves an empty negative prompt as zeros (force_zeros_for_empty_prompt), as its own call would.
        zero_negative = not negative_prompt and getattr(self.pipe.config, "force_zeros_for_empty_prompt", False)
        negative_chunks = [] if zero_negative else prompt_chunks(negative_prompt or "", self.count_tokens, limit)
        # Both sides need the same length: the shorter is padded with empty chunks (as A1111 does).
        n = max(len(chunks), len(negative_chunks))
        positive, pooled = self._encode_chunks(chunks + [""] * (n - len(chunks)))
        if zero_negative:
            negative, negative_pooled = torch.zeros_like(positive), (None if pooled is None else torch.zeros_like(pooled))
        else:
            negative, negative_pooled = self._encode_chunks(negative_chunks + [""] * (n - len(negative_chunks)))
        kwargs = {"prompt_embeds": positive, "negative_prompt_embeds": negative}
        if pooled is not None:
            kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
        tokens = self.count_tokens(prompt)
        return kwargs, {"prompt_tokens": tokens, "prompt_chunks": len(chunks), "prompt_encoding": f"{limit}-token chunks"}

    def _encode_chunks(self, chunks: list[str]):
        """Each chunk through the pipeline's own encode_prompt (its clip-skip, both SDXL encoders,
        dtype), hidden states concatenated; the pooled embedding (SDXL) is the first chunk's."""
        import torch

        hidden, pooled = [], None
        for chunk in chunks:
            out = self.pipe.encode_prompt(prompt=chunk, device=self.device, num_images_per_prompt=1,
                                          do_classifier_free_guidance=False)
            hidden.append(out[0])
            if pooled is None and len(out) == 4:  # SDXL: (embeds, negative, pooled, negative pooled)
                pooled = out[2]
        return torch.cat(hidden, dim=1), pooled
