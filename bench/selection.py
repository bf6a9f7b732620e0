"""Selection speed: images per second for scoring (with and without OCR) and the time of
`select` on 1000 candidates, with 250 measured beside it so the ratio shows how it scales.

    OMP_NUM_THREADS=1 PYTHONPATH=src:tests python bench/selection.py [--images 40] [--size 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from constructed import figure, with_text  # tests/constructed.py: the same images the tests use
from synthlora.config import config_problem
from synthlora.score import score_image
from synthlora.selection import select

REPO = Path(__file__).resolve().parents[1]


def select_defaults() -> dict:
    cfg = {"characters": {"x": {"reference": "r.png", "description": "d.md", "trigger": "x"}}}
    assert config_problem(cfg, REPO / "config" / "config.schema.yaml") is None
    return cfg["select"]


def scoring_rate(paths: list[Path], ocr: str) -> float:
    start = time.perf_counter()
    for p in paths:
        score_image(p, ocr=ocr)
    return len(paths) / (time.perf_counter() - start)


def synthetic_candidates(n: int, dim: int, rng) -> list[dict]:
    """Scores as the score rule writes them, identity vectors around one character (10% strangers)."""
    views = ["front view", "from side", "from behind", "three-quarter view left", "from above"]
    poses = ["standing", "sitting", "walking", "waving"]
    identity, stranger = rng.normal(size=dim), rng.normal(size=dim)
    out = []
    for i in range(n):
        centre = stranger if i % 10 == 9 else identity
        out.append({
            "key": f"{i:016x}",
            "tags": {"views": views[i % 5], "poses": poses[i % 4], "expressions": str(i % 6), "framings": str(i % 3),
                     "backgrounds": "white background"},
            "score": {"decodes": True, "width": 1024, "height": 1024, "sharpness": float(rng.uniform(50, 5000)),
                      "noise": float(rng.uniform(0, 2)), "phash": f"{int(rng.integers(0, 2**63)):016x}",
                      "edge_sharpness": float(rng.uniform(0.4, 0.9)), "phash256": random_hash(rng),
                      "phash256_crops": [random_hash(rng) for _ in range(48)],
                      "text_words": [], "text_chars": 0, "figures": 1, "border_rgb": [250.0, 250.0, 250.0]},
            "vector": list(centre + 0.4 * rng.normal(size=dim)),
        })
    return out


def random_hash(rng) -> str:
    """A 256-bit hash as score.py writes it (64 hex digits)."""
    return "".join(f"{int(rng.integers(0, 2**63)):016x}" for _ in range(4))


def select_seconds(candidates, settings, reference) -> float:
    start = time.perf_counter()
    select(candidates, settings, (1024, 1024), reference)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=40, help="images to score")
    ap.add_argument("--size", type=int, default=256, help="their side in pixels")
    ap.add_argument("--dim", type=int, default=768, help="embedding size (CLIP-L: 768)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.images):
            im = figure(i, size=args.size)
            (with_text(im) if i % 10 == 0 else im).save(Path(tmp) / f"{i}.png")
            paths.append(Path(tmp) / f"{i}.png")
        classical = scoring_rate(paths, ocr="")
        with_ocr = scoring_rate(paths, ocr="tesseract")
    print(f"score, {args.size}px: {classical:.1f} images/s without OCR, {with_ocr:.1f} images/s with OCR "
          f"(OCR costs {classical / with_ocr:.1f}x)")

    rng = np.random.default_rng(0)
    settings = {**select_defaults(), "count": 48}
    reference = {"phash": f"{int(rng.integers(0, 2**63)):016x}", "vector": list(rng.normal(size=args.dim))}
    select_seconds(synthetic_candidates(10, args.dim, rng), settings, reference)  # imports (scipy) out of the timing
    small = select_seconds(synthetic_candidates(250, args.dim, rng), settings, reference)
    large = select_seconds(synthetic_candidates(1000, args.dim, rng), settings, reference)
    print(f"select: 250 candidates {small:.3f} s, 1000 candidates {large:.3f} s "
          f"(4x the candidates took {large / small:.1f}x the time)")


if __name__ == "__main__":
    main()
