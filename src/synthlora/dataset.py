"""The kohya-ready dataset folder: ``{repeats}_{trigger}/`` with images hard-linked beside their captions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from synthlora.io import atomic_dir


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links unsupported: a copy is still correct
        shutil.copy2(src, dst)


def build_dataset(out_dir: str | Path, subset: str, items: list[tuple[Path, Path]]) -> Path:
    """``items``: (image, caption) pairs. Replaces ``out_dir`` whole, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        sub = tmp / subset
        sub.mkdir()
        for image, caption in items:
            link_or_copy(Path(image), sub / Path(image).name)
            shutil.copyfile(caption, sub / (Path(image).stem + ".txt"))
    return out_dir / subset
