"""``generate`` backend ``folder``: bring your own images (renders from a 3D character creator,
pictures you own). Each file becomes a shot whose key is the hash of its bytes, so the images go
through the same scoring, selection and captioning as generated ones, and replacing a file
changes its key. Byte-identical files are one shot (the plan lists the copies under it). A file
that is no usable picture (truncated, not an image, a decompression bomb) becomes a failed shot
with the reason, naming the file, so selection rejects it and the run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from synthlora.backends.base import ShotFailed
from synthlora.intake import WHITE, PictureProblem, open_picture
from synthlora.io import file_sha256
from synthlora.plan import shot_key

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


class FolderError(ValueError):
    pass


def folder_files(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"generate.folder: {folder} is not a directory; put your images there or set "
                          "generate.folder (it may contain {character})")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if not files:
        raise FolderError(f"generate.folder: {folder} holds no {'/'.join(EXTENSIONS)} image; add some or "
                          "use another generate.backend")
    return files


def folder_plan(folder: str | Path) -> dict:
    """One shot per distinct image file, in name order; a file byte-identical to an earlier one is
    listed under that one's key in ``identical_files`` instead (one picture, one candidate). Tags
    are unknown (rule observe or captioning finds them). No index: a file added before another
    must not change that other's shot (generate's params)."""
    shots, identical, by_sha = [], {}, {}
    for path in folder_files(folder):
        sha = file_sha256(path)
        key = shot_key({"backend": "folder", "sha256": sha})
        if sha in by_sha:
            identical.setdefault(key, []).append(str(path))
            continue
        by_sha[sha] = key
        shots.append({"key": key, "backend": "folder", "source_file": str(path), "sha256": sha, "tags": {},
                      "objects": [], "prompt": "", "negative_prompt": "", "seed": None})
    return {"shots": shots, "identical_files": identical}


class FolderGenerator:
    def __init__(self, background=WHITE):
        self.background = background

    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        path = Path(shot["source_file"])
        if file_sha256(path) != shot["sha256"]:
            raise FolderError(f"{path} changed since the plan was made; run snakemake again so the plan is current")
        try:
            image, notes = open_picture(path, self.background)
        except PictureProblem as exc:
            raise ShotFailed(f"{path}: {exc}") from None
        return image, {"source": "folder", "origin": str(path), **({"converted": notes} if notes else {})}
