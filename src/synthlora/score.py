"""Cheap per-image measures (no model, no torch): decode check, size, sharpness, perceptual hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian: low for blurred images (the usual focus measure)."""
    g = gray.astype(np.float64)
    lap = g[1:-1, 2:] + g[1:-1, :-2] + g[2:, 1:-1] + g[:-2, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var()) if lap.size else 0.0


def score_image(path: str | Path) -> dict[str, Any]:
    import imagehash

    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except Exception as exc:  # any decode failure makes the image unusable, whatever its cause
        return {"decodes": False, "error": f"{type(exc).__name__}: {exc}"}
    gray = np.asarray(rgb.convert("L"))
    arr = np.asarray(rgb, dtype=np.float64)
    return {
        "decodes": True,
        "width": rgb.width,
        "height": rgb.height,
        "sharpness": round(sharpness(gray), 4),
        "phash": str(imagehash.phash(rgb)),
        "dhash": str(imagehash.dhash(rgb)),
        "mean_rgb": [round(float(v), 2) for v in arr.reshape(-1, 3).mean(0)],
        "std_luma": round(float(gray.std()), 3),
    }
