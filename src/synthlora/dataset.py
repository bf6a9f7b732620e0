"""The kohya-ready dataset folder: ``{repeats}_{trigger}/`` with copies of the images beside their captions.

Copies, not hard links: an image edited or damaged in place under images/ must not change a
dataset (and so a training) that was built from it without Snakemake knowing."""

from __future__ import annotations

import shutil
from pathlib import Path

from synthlora.io import atomic_dir


def build_dataset(out_dir: str | Path, subset: str, items: list[tuple[Path, Path]]) -> Path:
    """``items``: (image, caption) pairs. Replaces ``out_dir`` whole, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        sub = tmp / subset
        sub.mkdir()
        for image, caption in items:
            shutil.copyfile(image, sub / Path(image).name)
            shutil.copyfile(caption, sub / (Path(image).stem + ".txt"))
    return out_dir / subset


def manifest(provenance: list[dict], scores: list[dict], selection_rows: list[dict]) -> dict:
    """Where every dataset image came from: key, source, backend, model, prompt, seed, size,
    time, and the scores and reason that got it selected."""
    by_key = {r["key"]: r for r in selection_rows}
    images = []
    for prov, score in zip(provenance, scores):
        shot = prov["shot"]
        row = by_key.get(shot["key"], {})
        images.append({
            "key": shot["key"],
            "source": prov.get("source", "generated"),
            "backend": shot.get("backend", ""),
            "model": shot.get("model", ""),
            "prompt": shot.get("prompt", ""),
            "negative_prompt": shot.get("negative_prompt", ""),
            "seed": shot.get("seed"),
            "size": [score.get("width"), score.get("height")],
            "created": prov.get("created", ""),
            "seconds": prov.get("seconds"),
            "tags": shot.get("tags", {}),
            "origin": prov.get("origin", ""),
            "selection": {k: row.get(k, "") for k in ("score", "reason", "identity", "reference_similarity",
                                                       "reference_phash_distance")},
            "scores": score,
        })
    return {"images": images}
