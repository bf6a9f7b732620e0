"""The reference image as every model sees it.

A reference may be 16-bit, greyscale, a palette picture or transparent. Pillow's ``convert("RGB")``
clips 16-bit values above 255 (a 16-bit greyscale picture becomes white) and drops transparency
(transparent areas become black). The reference is converted once, faithfully (synthlora.intake:
16-bit scaled to 8, a palette expanded, transparency laid on the character's background colour),
into ``results/<name>/reference.png``; the analysis model, the near-copy guard (hashes and
embedding) and the evaluation's identity_reference all read that file, so they see one picture.
Light: Pillow and numpy only.
"""

from __future__ import annotations

from pathlib import Path

WHITE = (255, 255, 255)


def converted_reference(path: str | Path, background=WHITE):
    """(the reference as 8-bit RGB with its transparency laid on ``background``, the conversions
    made); a file that is no picture raises ValueError naming it."""
    from synthlora.intake import PictureProblem, open_picture

    try:
        return open_picture(Path(path), tuple(int(v) for v in background))
    except PictureProblem as exc:
        raise ValueError(f"reference image {path}: {exc}; export it again as PNG or JPEG") from None


def load_reference(path: str | Path, background=WHITE):
    return converted_reference(path, background)[0]


def write_reference(path: str | Path, out: str | Path, background=WHITE) -> list[str]:
    """Write the converted reference as PNG to ``out`` (atomically); return the conversions made."""
    from synthlora.io import atomic_path

    image, notes = converted_reference(path, background)
    with atomic_path(out) as tmp:
        image.save(tmp, format="PNG")
    return notes
