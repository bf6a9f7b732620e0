"""``generate`` backend: a local diffusers text-to-image pipeline (SDXL, SD1.5, or the demo's tiny SDXL)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from synthlora.backends.base import load_pretrained, resolve_device, resolve_dtype


class DiffusersGenerator:
    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", **_pixel_options):
        import torch
        from diffusers import AutoPipelineForText2Image

        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.pipe = load_pretrained(AutoPipelineForText2Image, model, "generate.model", dtype=torch_dtype).to(self.device)
        self.pipe.set_progress_bar_config(desc="denoise", leave=False)
        self.model = model

    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        import torch

        generator = torch.Generator("cpu").manual_seed(int(shot["seed"]))
        image = self.pipe(
            prompt=shot["prompt"],
            negative_prompt=shot["negative_prompt"] or None,
            num_inference_steps=int(shot["steps"]),
            guidance_scale=float(shot["guidance_scale"]),
            width=int(shot["width"]),
            height=int(shot["height"]),
            generator=generator,
        ).images[0]
        return image, {"pipeline": type(self.pipe).__name__, "device": self.device}
