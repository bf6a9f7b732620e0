"""Image embeddings for identity and near-copy checks, from a local model via transformers
(CLIP / SigLIP family through ``get_image_features``; DINOv2-style models through their pooled
output). Vectors are L2-normalised, so a dot product is the cosine similarity."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from synthlora.backends.base import resolve_device


class Embedder:
    def __init__(self, model: str, device: str = "auto"):
        import torch
        from transformers import AutoImageProcessor, AutoModel

        self.device = resolve_device(device)
        self.processor = AutoImageProcessor.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(self.device).eval()
        self.name = model
        self._torch = torch

    def embed(self, images: list[Image.Image]) -> list[list[float]]:
        torch = self._torch
        inputs = self.processor(images=[im.convert("RGB") for im in images], return_tensors="pt").to(self.device)
        with torch.no_grad():
            if hasattr(self.model, "get_image_features"):
                out = self.model.get_image_features(pixel_values=inputs["pixel_values"])
                # transformers 5 returns a model output whose pooled field is the projected embedding.
                vec = out if isinstance(out, torch.Tensor) else out.pooler_output
            else:
                vec = self.model(pixel_values=inputs["pixel_values"]).pooler_output
        vec = torch.nn.functional.normalize(vec.float(), dim=-1)
        return [[round(float(x), 6) for x in row] for row in vec.cpu()]


def embed_file(embedder: Embedder, path: str | Path) -> dict:
    """An undecodable image gets no vector (scoring reports it; selection rejects it)."""
    try:
        with Image.open(path) as im:
            im.load()
            vector = embedder.embed([im])[0]
    except (OSError, ValueError, SyntaxError):
        vector = None
    return {"model": embedder.name, "vector": vector}
