"""Is a built file what it claims to be? A LoRA, image or TOML that does not parse is treated as
missing: checked while the workflow plans its jobs (set aside, then rebuilt) and again by the jobs
that read or deliver it, so a damaged file is never delivered.

The start-up checks read only headers and trailers (cheap even for thousands of images); the jobs
that deliver a LoRA check it completely (every tensor's bytes, and the SHA-256 in its metadata).
No torch: safetensors files are read as bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import tomllib
from pathlib import Path

from synthlora.layout import DAMAGED_SUFFIX

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def safetensors_header(path: str | Path) -> tuple[dict, int]:
    """(the JSON header, its length); ValueError when the file cannot hold one."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"only {len(raw)} bytes long")
        (n,) = struct.unpack("<Q", raw)
        if n > os.path.getsize(path) - 8:
            raise ValueError(f"its header claims {n} bytes, more than the file has (truncated?)")
        try:
            return json.loads(f.read(n)), n
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"its header is not JSON ({exc})") from None


def safetensors_problem(path: str | Path, full: bool = False) -> str | None:
    """Why a .safetensors LoRA is unusable, or None. Always: the header parses, names tensors, and
    every tensor's bytes lie in the file, which ends where the last one does (a truncated file does
    not). ``full``: the tensor bytes hash to the sshs_model_hash in its metadata, when it has one."""
    path = Path(path)
    try:
        header, n = safetensors_header(path)
    except (OSError, ValueError) as exc:
        return f"not a readable safetensors file: {exc}"
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        return "holds no tensors"
    end = 0
    for name, t in tensors.items():
        try:
            begin, stop = t["data_offsets"]
            size = DTYPE_BYTES[t["dtype"]] * math.prod(t["shape"])
        except (KeyError, TypeError, ValueError):
            return f"tensor {name!r} is described wrongly in the header"
        if stop - begin != size:
            return f"tensor {name!r} has {stop - begin} bytes for a {t['dtype']} {t['shape']}"
        end = max(end, stop)
    data = path.stat().st_size - 8 - n
    if data != end:
        return f"the header describes {end} bytes of tensors, the file holds {data} (truncated or appended to)"
    if full:
        expected = (header.get("__metadata__") or {}).get("sshs_model_hash")
        if expected and lora_data_hash(path, n) != expected:
            return "its tensor bytes do not match the sshs_model_hash in its metadata (damaged in place)"
    return None


def lora_data_hash(path: str | Path, header_length: int | None = None) -> str:
    """SHA-256 of the tensor bytes (everything after the header): sd-scripts' sshs_model_hash."""
    if header_length is None:
        header_length = safetensors_header(path)[1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(8 + header_length)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verified_lora(path: str | Path) -> dict:
    """What a full check of a LoRA found, for the model card; ValueError naming the file if it fails."""
    problem = safetensors_problem(path, full=True)
    if problem:
        raise ValueError(f"{path}: {problem}")
    header, n = safetensors_header(path)
    meta = header.get("__metadata__") or {}
    tensors = [k for k in header if k != "__metadata__"]
    return {"tensors": len(tensors), "modules": sum(1 for k in tensors if k.endswith(".alpha")),
            "sha256_of_tensors": lora_data_hash(path, n), "hash_in_metadata": meta.get("sshs_model_hash", ""),
            "bytes": Path(path).stat().st_size}


def png_problem(path: str | Path) -> str | None:
    """Why a PNG is cut short, or None: a PNG ends with its IEND chunk (12 bytes, read from the end)."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return "not a PNG file"
            f.seek(-12, os.SEEK_END)
            if f.read(12) != PNG_END:
                return "does not end with PNG's IEND chunk (truncated)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def toml_problem(path: str | Path) -> str | None:
    try:
        with open(path, "rb") as f:
            tomllib.load(f)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return f"not valid TOML ({exc})"
    return None


def file_problem(path: str | Path) -> str | None:
    """Why an existing LoRA, image or TOML does not parse (by its suffix), or None; None also for a
    missing file. An image whose generation failed on purpose (an API refusal: images/<key>.json
    says status failed) holds a marker, not a picture, and is no problem."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix == ".toml":
        return toml_problem(path)
    if path.suffix == ".png":
        problem = png_problem(path)
        return None if problem and _failed_on_purpose(path) else problem
    return None


def _failed_on_purpose(image: Path) -> bool:
    from synthlora.generation import is_failed

    try:
        return is_failed(json.loads(image.with_suffix(".json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def set_aside(path: str | Path) -> Path:
    """Rename a damaged file to <name>.damaged: Snakemake then sees it missing and rebuilds it; the
    damaged bytes stay for a look (`synthlora clean` lists and removes them)."""
    path = Path(path)
    target = path.with_name(path.name + DAMAGED_SUFFIX)
    os.replace(path, target)
    return target
