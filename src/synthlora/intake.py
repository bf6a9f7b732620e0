"""Reading a picture without letting it stop a run.

Pictures come from a user's folder, from an API's reply, or from ``images/{key}.png``. Any of
them may be a truncated download, a text file named ``.png``, a header that declares
gigapixels (a decompression bomb: decoding it would exhaust memory), or a valid file in an
encoding a model does not take (16-bit, CMYK, palette, transparent, animated). ``open_picture``
turns each into either an 8-bit RGB picture, with a note of every conversion, or a
``PictureProblem`` whose message says in words what is wrong with the file, so the file becomes
a candidate that selection rejects with that reason instead of an error that stops the run.

Light: Pillow and numpy only (the score and select rules use this).
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Above this many pixels a file is not decoded at all; the decision is made from its header.
# Pillow's own limit (89 megapixels): past it Pillow warns of a decompression bomb, at twice it
# refuses. A picture that large is no training image anyway (kohya scales to ~1 megapixel).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
WHITE = (255, 255, 255)


class PictureProblem(ValueError):
    """A file that cannot become a picture; str() says why, in words a user can act on."""


def open_picture(source: str | Path | bytes, background=WHITE) -> tuple[Image.Image, list[str]]:
    """The picture in ``source`` (a path or the file's bytes) as loaded 8-bit RGB, and notes of the
    conversions made (first frame of an animation, 16-bit scaled to 8, CMYK to RGB, a transparent
    backdrop flattened onto ``background``). Raises PictureProblem for a file that cannot be one."""
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(stream)
    except Image.DecompressionBombError as exc:
        raise PictureProblem(too_large(_declared_pixels(str(exc)))) from None
    except Exception as exc:  # not an image Pillow knows: a text file, an HTML error page, zeros
        raise PictureProblem(f"not a picture: no known image format ({_first_line(exc)})") from None
    try:
        return as_rgb(im, background)
    finally:
        im.close()


def as_rgb(im: Image.Image, background=WHITE) -> tuple[Image.Image, list[str]]:
    """An opened (possibly not yet decoded) picture as loaded 8-bit RGB, with conversion notes.
    The size is checked from the header before any pixel is decoded."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise PictureProblem(too_large(w * h, (w, h)))
    if w < 1 or h < 1:
        raise PictureProblem(f"declares an empty picture ({w}x{h})")
    notes = []
    frames = getattr(im, "n_frames", 1)
    try:
        if frames > 1:
            im.seek(0)
            notes.append(f"animated ({frames} frames): the first frame is used")
        im.load()
        upright = ImageOps.exif_transpose(im)  # a phone photo's EXIF rotation, applied
        rgb = _to_rgb(upright if upright is not None else im, tuple(int(round(v)) for v in background), notes)
    except PictureProblem:
        raise
    except Exception as exc:  # truncated data, a broken chunk, a bad palette: whatever the decoder says
        raise PictureProblem(f"cannot be decoded: the file is truncated or damaged ({_first_line(exc)})") from None
    return rgb, notes


def _to_rgb(im: Image.Image, background: tuple[int, int, int], notes: list[str]) -> Image.Image:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: convert("RGB") would clip every value above 255 to white
        arr = np.asarray(im, dtype=np.float64)
        scale = 257.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 1.0
        notes.append(f"{'16' if scale > 1 else '32'}-bit greyscale scaled to 8 bits")
        return Image.fromarray(np.clip(arr / scale + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        notes.append("floating-point picture scaled to 8 bits")
        return Image.fromarray(np.clip(arr / top * 255 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        notes.append("palette picture converted to RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] < 255:
            notes.append(f"transparent backdrop flattened onto {list(background)}")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    return im.convert("RGB")


def too_large(pixels: int | None, size: tuple[int, int] | None = None) -> str:
    declared = f"{size[0]}x{size[1]} = " if size else ""
    amount = f"{declared}{pixels / 1e6:,.0f} megapixels" if pixels else "more pixels than Pillow will decode"
    return (f"too large to decode: its header declares {amount}, over the limit of {MAX_PIXELS / 1e6:.0f} "
            "megapixels (a decompression bomb, or an export at the wrong size); it was not decoded")


def _declared_pixels(message: str) -> int | None:
    m = re.search(r"\((\d+) pixels\)", message)
    return int(m.group(1)) if m else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def raised_by_decoder(exc: BaseException) -> bool:
    """Whether an exception came from Pillow decoding a picture (its innermost frame is in PIL):
    then it is the picture that is bad, not the run."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    return last is not None and "/PIL/" in last.tb_frame.f_code.co_filename.replace("\\", "/")


def backdrop_colour(shot: dict, config: dict) -> tuple[int, int, int]:
    """The colour a transparent picture of ``shot`` is flattened onto: its planned background's
    colour (select.background_colors), else the first planned background that has one, else white."""
    colours = config.get("select", {}).get("background_colors", {})
    wanted = (shot.get("tags") or {}).get("backgrounds")
    if wanted in colours:
        return tuple(int(v) for v in colours[wanted])
    for tag in config.get("plan", {}).get("backgrounds", {}):
        if tag in colours:
            return tuple(int(v) for v in colours[tag])
    return WHITE
