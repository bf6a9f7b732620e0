"""Backends per stage, chosen by ``<stage>.backend`` in config. Heavy imports happen only here, lazily."""

from __future__ import annotations

from synthlora.backends.base import Analyzer, Captioner, Generator

ANALYZE_BACKENDS = ("manual", "transformers", "openai")
GENERATE_BACKENDS = ("diffusers", "folder", "openai")
CAPTION_BACKENDS = ("transformers", "openai")


def make_analyzer(cfg: dict, features_manual: str | None = None) -> Analyzer:
    backend = cfg["backend"]
    if backend == "manual":
        from synthlora.backends.manual import ManualAnalyzer

        return ManualAnalyzer(features_manual)
    if backend == "transformers":
        from synthlora.backends.transformers_vlm import TransformersAnalyzer

        return TransformersAnalyzer(cfg["model"], device=cfg["device"], dtype=cfg["dtype"],
                                    max_string_tokens=cfg["max_string_tokens"], max_items=cfg["max_items"])
    if backend == "openai":
        from synthlora.backends.openai_api import OpenAIAnalyzer

        return OpenAIAnalyzer(cfg["model"], cfg["openai"])
    raise ValueError(f"analyze.backend {backend!r} is not one of {ANALYZE_BACKENDS}")


def make_generator(cfg: dict, reference: str | None = None) -> Generator:
    backend = cfg["backend"]
    if backend == "openai":
        from synthlora.backends.openai_api import OpenAIGenerator

        return OpenAIGenerator(cfg["model"], cfg["openai"], reference)
    if backend == "diffusers":
        from synthlora.backends.diffusers_gen import DiffusersGenerator

        return DiffusersGenerator(cfg["model"], device=cfg["device"], dtype=cfg["dtype"],
                                  model_options=cfg.get("model_options"))
    if backend == "folder":
        from synthlora.backends.folder import FolderGenerator

        return FolderGenerator(cfg.get("background", (255, 255, 255)))
    raise ValueError(f"generate.backend {backend!r} is not one of {GENERATE_BACKENDS}")


def make_captioner(cfg: dict) -> Captioner:
    backend = cfg["backend"]
    if backend == "transformers":
        from synthlora.backends.transformers_vlm import TransformersCaptioner

        return TransformersCaptioner(cfg["model"], device=cfg["device"], dtype=cfg["dtype"])
    if backend == "openai":
        from synthlora.backends.openai_api import OpenAICaptioner

        return OpenAICaptioner(cfg["model"], cfg["openai"], retries=cfg["openai"]["retries"])
    raise ValueError(f"caption.backend {backend!r} is not one of {CAPTION_BACKENDS}")
