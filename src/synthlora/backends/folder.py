"""``generate`` backend ``folder``: bring your own images (renders from a 3D character creator,
pictures you own). Each file becomes a shot whose key is the hash of its bytes, so the images go
through the same scoring, selection and captioning as generated ones, and replacing a file
changes its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

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
    """One shot per image file, in name order. Tags are unknown (captioning finds them). No
    index: a file added before another must not change that other's shot (generate's params)."""
    shots = []
    for path in folder_files(folder):
        sha = file_sha256(path)
        shots.append({"key": shot_key({"backend": "folder", "sha256": sha}), "backend": "folder",
                      "source_file": str(path), "sha256": sha, "tags": {}, "objects": [], "prompt": "",
                      "negative_prompt": "", "seed": None})
    return {"shots": shots}


class FolderGenerator:
    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        path = Path(shot["source_file"])
        if file_sha256(path) != shot["sha256"]:
            raise FolderError(f"{path} changed since the plan was made; run snakemake again so the plan is current")
        with Image.open(path) as im:
            image = im.convert("RGB")
        return image, {"source": "folder", "origin": str(path)}
