"""Image and text embeddings from a local model via transformers, shared by selection (identity
clustering, near-copy guard) and evaluation (identity, prompt adherence).

CLIP / SigLIP family through ``get_image_features`` / ``get_text_features``; DINOv2-style
image-only models through their pooled output. Vectors are L2-normalised, so a dot product is a
cosine similarity. Random-weight demo embeddings mean nothing; the functions that use them are
tested on constructed embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms == 0, 1.0, norms)


def _features(out):
    """transformers 5 returns a BaseModelOutputWithPooling from get_*_features (the projected
    embedding is its pooler_output); older versions return the tensor itself."""
    return getattr(out, "pooler_output", out)


class Embedder:
    def __init__(self, model: str, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
                 key: str = "select.embedder"):
        import torch
        from transformers import AutoModel, AutoProcessor

        from synthlora.backends.base import load_pretrained, resolve_device, resolve_dtype

        self.device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, self.device)
        self.model = load_pretrained(AutoModel, model, key, dtype=torch_dtype).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(model)
        self.dtype = torch_dtype
        self.batch_size = batch_size
        self.name = str(model)

    def images(self, images: Sequence) -> np.ndarray:
        """PIL images or paths → (n, d) unit vectors."""
        import torch
        from PIL import Image

        out = []
        for i in range(0, len(images), self.batch_size):
            batch = []
            for im in images[i:i + self.batch_size]:
                if isinstance(im, (str, Path)):
                    with Image.open(im) as f:
                        im = f.convert("RGB")
                batch.append(im.convert("RGB"))
            inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
            pixels = inputs["pixel_values"].to(self.dtype)
            with torch.no_grad():
                if hasattr(self.model, "get_image_features"):
                    vec = _features(self.model.get_image_features(pixel_values=pixels))
                else:  # DINOv2 and other image-only backbones
                    vec = self.model(pixel_values=pixels).pooler_output
            out.append(vec.float().cpu().numpy())
        return normalize(np.concatenate(out)) if out else np.zeros((0, 0))

    def texts(self, texts: Iterable[str]) -> np.ndarray:
        """Strings → (n, d) unit vectors (truncated to the model's context length)."""
        import torch

        texts = list(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            inputs = self.processor(text=texts[i:i + self.batch_size], padding=True, truncation=True,
                                    return_tensors="pt").to(self.device)
            with torch.no_grad():
                out.append(_features(self.model.get_text_features(**inputs)).float().cpu().numpy())
        return normalize(np.concatenate(out)) if out else np.zeros((0, 0))

    def embed(self, images: list) -> list[list[float]]:
        """Image vectors as JSON-ready lists."""
        return [[round(float(x), 6) for x in row] for row in self.images(images)]


def embed_file(embedder: Embedder, path: str | Path) -> dict:
    """An undecodable image gets no vector (scoring reports it; selection rejects it)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            vector = embedder.embed([im])[0]
    except (OSError, ValueError, SyntaxError):
        vector = None
    return {"model": embedder.name, "vector": vector}
