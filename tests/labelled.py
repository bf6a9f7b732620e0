"""The labelled set selection is calibrated and measured on: drawn pictures of Mira
(tests/drawn.py), good ones in many poses and each failure a practitioner rejects by eye, made
from a good drawing by what really causes it (burnt-in subtitles, a tiled watermark, a second
figure, camera or motion blur, a wrong backdrop, an edited reference, a JPEG re-save, a broken
file). Every file has a label: keep or reject, the reason selection should give, and for
duplicates the group of which exactly one may stay.

``write_labelled_set(folder)`` writes the files (deterministic) and returns the labels;
bench/selection_quality.py and tests/test_selection_checks.py read them.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from drawn import Pose, draw

SIZE = 256

# The reason selection must give for each defect class (the start of a reason, or a phrase in it).
REASONS = {
    "good": None,
    "converted": None,                      # 16-bit, CMYK, palette, transparent, animated: kept after conversion
    "subtitle white": "burnt-in text",
    "subtitle yellow": "burnt-in text",
    "watermark tiled": "watermark",
    "corner logo": "burnt-in text",
    "overlapping figures": "more than one figure",
    "separate figures": "more than one figure",
    "motion blur": "blurred",
    "gaussian blur": "blurred",
    "noise": "noisy",
    "wrong background": "background",
    "near-copy of reference": "near-copy of reference",
    "duplicate": "duplicate",
    "tiny": "too small",
    "broken": "unreadable",
}


@dataclass(frozen=True)
class Label:
    file: str
    defect: str                 # a key of REASONS
    group: str = ""             # duplicates: the files of one group share it; one of them may stay

    @property
    def keep(self) -> bool:
        return REASONS[self.defect] is None

    @property
    def reason(self) -> str | None:
        return REASONS[self.defect]


# Good pictures: views x poses x expressions x framings, no two alike.
GOOD_POSES = [
    Pose(),
    Pose("three-quarter view left", "waving", "standing", "open mouth", "cowboy shot"),
    Pose("from behind", "hands on hips", "wide stance", "closed mouth", "full body"),
    Pose("three-quarter view right", "arms crossed", "standing", "surprised", "upper body"),
    Pose("front view", "standing", "standing", "blush", "portrait"),
    Pose("front view", "reaching", "walking", "serious", "full body", shift=0.12),
    Pose("three-quarter view right", "standing", "walking", "smile", "full body", shift=-0.1),
    Pose("three-quarter view left", "hands on hips", "standing", "serious", "cowboy shot", shift=0.08),
    Pose("front view", "waving", "wide stance", "smile", "upper body"),
    Pose("three-quarter view left", "standing", "standing", "surprised", "portrait", shift=-0.06),
    Pose("from behind", "waving", "walking", "closed mouth", "cowboy shot", shift=-0.08),
    Pose("three-quarter view right", "reaching", "wide stance", "open mouth", "full body", zoom=1.1),
    Pose("front view", "arms crossed", "standing", "closed mouth", "cowboy shot"),
    Pose("three-quarter view right", "standing", "standing", "blush", "portrait", shift=0.08),
    Pose("front view", "hands on hips", "walking", "open mouth", "full body", shift=-0.14),
    Pose("three-quarter view left", "reaching", "standing", "smile", "upper body", shift=0.05),
    Pose("from behind", "standing", "standing", "closed mouth", "upper body"),
    Pose("three-quarter view left", "arms crossed", "wide stance", "serious", "full body", zoom=1.15),
    Pose("front view", "standing", "standing", "surprised", "cowboy shot", shift=-0.1),
    Pose("three-quarter view right", "waving", "standing", "smile", "portrait"),
    Pose("front view", "reaching", "standing", "blush", "cowboy shot", shift=0.1),
    Pose("three-quarter view left", "hands on hips", "walking", "open mouth", "full body", shift=0.15, zoom=0.9),
    Pose("three-quarter view right", "hands on hips", "standing", "closed mouth", "upper body", shift=-0.05),
    Pose("front view", "waving", "walking", "serious", "full body", shift=0.05, zoom=1.05),
]
REFERENCE_POSE = Pose("front view", "standing", "standing", "smile", "full body", zoom=1.2)


def good(i: int) -> Image.Image:
    return draw(GOOD_POSES[i], SIZE)


def font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def subtitle(im: Image.Image, lines: list[str], fill, stroke, stroke_width: int) -> Image.Image:
    """Subtitles as video players burn them in: centred at the bottom, one or two lines."""
    im = im.copy()
    d = ImageDraw.Draw(im)
    f = font(max(12, SIZE // 17))
    y = im.height - 8 - len(lines) * (f.size + 4)
    for text in lines:
        w = d.textlength(text, font=f)
        d.text(((im.width - w) / 2, y), text, font=f, fill=fill, stroke_width=stroke_width, stroke_fill=stroke)
        y += f.size + 4
    return im


def tiled_watermark(im: Image.Image, text: str = "© KUMO STUDIO", alpha: float = 0.3, angle: float = 28) -> Image.Image:
    """A semi-transparent text repeated over the whole picture, slanted, as stock sites stamp previews."""
    layer = Image.new("L", (im.width * 2, im.height * 2), 0)
    d = ImageDraw.Draw(layer)
    f = font(max(12, SIZE // 14))
    step_x, step_y = d.textlength(text, font=f) + SIZE // 8, SIZE // 5
    for row, y in enumerate(range(0, layer.height, int(step_y))):
        for x in range(-(row % 2) * int(step_x) // 2, layer.width, int(step_x)):
            d.text((x, y), text, font=f, fill=255)
    layer = layer.rotate(angle, resample=Image.BICUBIC).crop((im.width // 2, im.height // 2,
                                                              im.width // 2 + im.width, im.height // 2 + im.height))
    grey = Image.new("RGB", im.size, (110, 110, 120))
    return Image.composite(grey, im, layer.point(lambda v: int(v * alpha)))


def corner_logo(im: Image.Image, text: str = "ART BY KUMO") -> Image.Image:
    """A studio's small mark in the lower right corner: an emblem and a name."""
    im = im.copy()
    d = ImageDraw.Draw(im)
    f = font(max(10, SIZE // 20))
    w = d.textlength(text, font=f)
    x, y = im.width - w - 8, im.height - f.size - 8
    r = f.size * 0.6
    d.ellipse([x - 2.6 * r, y + f.size / 2 - r, x - 0.6 * r, y + f.size / 2 + r], outline=(200, 40, 60), width=2)
    d.text((x, y), text, font=f, fill=(200, 40, 60))
    return im


def two_figures(a: Pose, b: Pose, overlap: bool) -> Image.Image:
    """Two Miras on one canvas: side by side (separate) or one partly in front of the other."""
    left = draw(Pose(**{**a.__dict__, "shift": -0.14 if overlap else -0.24, "zoom": 0.95}), SIZE)
    right = draw(Pose(**{**b.__dict__, "shift": 0.12 if overlap else 0.24, "zoom": 0.92}), SIZE)
    # the right one stands in front: its pixels win wherever they are not background
    fr = np.asarray(right).astype(np.int16)
    mask = (np.abs(fr - 255).sum(2) > 12)[..., None]
    return Image.fromarray(np.where(mask, fr, np.asarray(left)).astype(np.uint8))


def motion_blur(im: Image.Image, length: int = 11, angle: float = 0.0) -> Image.Image:
    from scipy import ndimage

    kernel = np.zeros((length, length))
    kernel[length // 2, :] = 1.0
    kernel = ndimage.rotate(kernel, angle, reshape=False, order=1)
    kernel /= kernel.sum()
    arr = np.asarray(im, dtype=np.float64)
    out = np.stack([ndimage.convolve(arr[..., c], kernel, mode="nearest") for c in range(3)], axis=2)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))


def noisy(im: Image.Image, sigma: float, seed: int) -> Image.Image:
    arr = np.asarray(im, dtype=np.float64) + np.random.default_rng(seed).normal(0, sigma, (im.height, im.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def on_background(pose: Pose, background) -> Image.Image:
    return draw(pose, SIZE, background=background)


def on_scene(pose: Pose) -> Image.Image:
    """A simple room: wall, floor, a window: what a scene prompt gives instead of a plain backdrop."""
    im = draw(pose, SIZE, background=(238, 226, 200))
    arr = np.asarray(im).copy()
    back = np.abs(arr.astype(np.int16) - (238, 226, 200)).sum(2) < 6
    scene = Image.new("RGB", im.size, (238, 226, 200))
    d = ImageDraw.Draw(scene)
    d.rectangle([0, SIZE * 0.72, SIZE, SIZE], fill=(150, 106, 70))
    d.rectangle([SIZE * 0.62, SIZE * 0.12, SIZE * 0.92, SIZE * 0.45], fill=(170, 210, 240), outline=(90, 70, 50), width=4)
    arr[back] = np.asarray(scene)[back]
    return Image.fromarray(arr)


def gradient_sky(pose: Pose) -> Image.Image:
    im = draw(pose, SIZE, background=(0, 0, 0))
    arr = np.asarray(im).copy()
    back = arr.sum(2) < 6
    ys = np.linspace(0, 1, SIZE)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - ys) + np.array([220, 235, 250]) * ys) * np.ones((1, SIZE, 1))
    arr[back] = sky.astype(np.uint8)[back]
    return Image.fromarray(arr)


def lightly_edited(im: Image.Image) -> Image.Image:
    """What a careless pipeline lets through: cropped by 3%, scaled back, a little more contrast."""
    from PIL import ImageEnhance

    m = round(im.width * 0.03)
    im = im.crop((m, m, im.width - m, im.height - m)).resize(im.size, Image.LANCZOS)
    return ImageEnhance.Contrast(im).enhance(1.1)


def cropped(im: Image.Image, fraction: float = 0.04) -> Image.Image:
    """A small crop of a picture, scaled back to its size: a duplicate, not a new picture."""
    mx, my = round(im.width * fraction), round(im.height * fraction)
    return im.crop((mx, my, im.width - mx, im.height - my)).resize(im.size, Image.LANCZOS)


def jpeg_bytes(im: Image.Image, quality: int = 80, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    im.convert(mode).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", **kw)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16(im: Image.Image) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG, written by hand: Pillow writes no such file."""
    arr = np.asarray(im.convert("RGB")).astype(">u2") * 257
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    header = struct.pack(">IIBBBBB", im.width, im.height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def bomb_header(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose header declares width x height pixels (gigapixels) over a few bytes of data: a
    decompression bomb. Decoding it would need ~10 GB; only its header may be read."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096)) + png_chunk(b"IEND", b""))


def transparent(im: Image.Image) -> Image.Image:
    """The figure on a transparent backdrop whose hidden colour is black (as many exporters write
    it): flattened naively, the backdrop turns black."""
    arr = np.asarray(im.convert("RGB"))
    alpha = np.where(np.abs(arr.astype(np.int16) - 255).sum(2) > 6, 255, 0).astype(np.uint8)
    rgb = np.where(alpha[..., None] > 0, arr, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def animated_png(first: Image.Image, second: Image.Image) -> bytes:
    """An APNG of two frames: a reader that takes the file as one picture must take the first."""
    buf = io.BytesIO()
    first.save(buf, format="PNG", save_all=True, append_images=[second], duration=200, loop=0)
    return buf.getvalue()


def write_labelled_set(folder: str | Path) -> tuple[list[Label], Path]:
    """Write every picture of the labelled set into ``folder`` (and the reference beside it, in
    ``folder/../reference.png``); return the labels and the reference's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels: list[Label] = []

    def save(name: str, defect: str, image: Image.Image | None = None, data: bytes | None = None, group: str = ""):
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        else:
            image.save(path)
        labels.append(Label(name, defect, group))

    goods = [good(i) for i in range(len(GOOD_POSES))]
    for i, im in enumerate(goods):
        save(f"good_{i:02d}.png", "good", im, group=f"dup{i}" if i in (3, 5, 7) else "")

    reference = draw(REFERENCE_POSE, 512)
    ref_path = folder.parent / "reference.png"
    reference.save(ref_path)
    ref_small = reference.resize((SIZE, SIZE), Image.LANCZOS)

    # Pictures in awkward encodings: right after conversion, so kept.
    extra = [Pose("three-quarter view left", "waving", "walking", "blush", "full body", shift=-0.16, zoom=0.85),
             Pose("from behind", "hands on hips", "standing", "surprised", "portrait", shift=-0.12),
             Pose("three-quarter view right", "reaching", "walking", "smile", "cowboy shot", shift=-0.12, zoom=0.9),
             Pose("from behind", "reaching", "standing", "closed mouth", "full body", shift=0.15, zoom=1.1),
             Pose("three-quarter view left", "waving", "wide stance", "serious", "portrait", shift=0.14, zoom=0.9)]
    ex = [draw(p, SIZE) for p in extra]
    save("converted_16bit.png", "converted", data=png16(ex[0]))
    save("converted_cmyk.jpg", "converted", data=jpeg_bytes(ex[1], quality=95, mode="CMYK"))
    save("converted_palette.png", "converted", data=png_bytes(ex[2].convert("P", palette=Image.ADAPTIVE, colors=96)))
    save("converted_transparent.png", "converted", transparent(ex[3]))
    save("converted_animated.png", "converted", data=animated_png(ex[4], good(0)))

    bad = [Pose("front view", "waving", "standing", "open mouth", "full body", shift=0.04),
           Pose("three-quarter view right", "standing", "walking", "serious", "cowboy shot"),
           Pose("three-quarter view left", "hands on hips", "standing", "smile", "upper body", shift=-0.04),
           Pose("front view", "reaching", "wide stance", "closed mouth", "full body", shift=-0.1),
           Pose("from behind", "arms crossed", "standing", "smile", "cowboy shot", shift=0.1)]
    b = [draw(p, SIZE) for p in bad]
    save("subtitle_white_1.png", "subtitle white",
         subtitle(b[0], ["Wait... where are you going?"], (255, 255, 255), (0, 0, 0), 2))
    save("subtitle_white_2.png", "subtitle white",
         subtitle(b[1], ["I told you already,", "we have to leave now."], (250, 250, 250), (20, 20, 20), 2))
    save("subtitle_yellow_1.png", "subtitle yellow",
         subtitle(b[2], ["Nobody else knows about this."], (255, 226, 40), (40, 30, 0), 1))
    save("subtitle_yellow_2.png", "subtitle yellow",
         subtitle(b[3], ["Then let us go together!"], (250, 220, 30), (250, 220, 30), 0))
    save("watermark_tiled_1.png", "watermark tiled", tiled_watermark(b[4]))
    save("watermark_tiled_2.png", "watermark tiled", tiled_watermark(b[0], "PREVIEW pixhub.example", 0.25, -24))
    save("corner_logo_1.png", "corner logo", corner_logo(b[1]))
    save("corner_logo_2.png", "corner logo", corner_logo(b[3], "@kumo_draws"))

    save("two_overlapping_1.png", "overlapping figures",
         two_figures(Pose("three-quarter view right"), Pose("three-quarter view left", "waving", expression="open mouth"), True))
    save("two_overlapping_2.png", "overlapping figures",
         two_figures(Pose("front view", "hands on hips", framing="cowboy shot"),
                     Pose("three-quarter view left", expression="blush", framing="cowboy shot"), True))
    save("two_separate.png", "separate figures",
         two_figures(Pose("front view", "waving", expression="smile"), Pose("from behind", "standing"), False))

    save("blur_motion_1.png", "motion blur", motion_blur(b[2], 11, 0))
    save("blur_motion_2.png", "motion blur", motion_blur(b[4], 9, 35))
    save("blur_gaussian_1.png", "gaussian blur", b[0].filter(ImageFilter.GaussianBlur(2.0)))
    save("blur_gaussian_2.png", "gaussian blur", b[3].filter(ImageFilter.GaussianBlur(1.5)))
    save("noise_1.png", "noise", noisy(b[1], 24, 1))
    save("noise_2.png", "noise", noisy(b[2], 14, 2))

    save("background_blue.png", "wrong background", on_background(bad[1], (150, 200, 240)))
    save("background_dark.png", "wrong background", on_background(bad[3], (44, 44, 60)))
    save("background_scene.png", "wrong background", on_scene(bad[4]))
    save("background_sky.png", "wrong background", gradient_sky(bad[0]))

    save("reference_copy.png", "near-copy of reference", ref_small)
    save("reference_edited.png", "near-copy of reference", lightly_edited(ref_small))
    save("reference_mirrored.png", "near-copy of reference", ImageOps.mirror(ref_small))
    save("reference_mirrored_edited.png", "near-copy of reference", lightly_edited(ImageOps.mirror(ref_small)))

    save("good_03_copy.png", "duplicate", data=(folder / "good_03.png").read_bytes(), group="dup3")
    save("good_05_resaved.jpg", "duplicate", data=jpeg_bytes(goods[5], quality=82), group="dup5")
    save("good_07_crop.png", "duplicate", cropped(goods[7]), group="dup7")

    save("tiny.png", "tiny", draw(Pose("three-quarter view right", "waving", "walking", "smile", "cowboy shot"), 32))
    full = png_bytes(draw(Pose("front view", "standing", "walking", "open mouth", "upper body"), SIZE))
    save("broken_truncated.png", "broken", data=full[: len(full) // 2])
    save("broken_not_an_image.png", "broken", data=b"this is a text file, not a picture\n")
    save("broken_bomb.png", "broken", data=bomb_header())
    return labels, ref_path


def select_labelled(folder: str | Path, reference: str | Path, work: str | Path, settings: dict,
                    ocr: str = "tesseract", scores_cache: dict | None = None) -> tuple[list[dict], dict]:
    """Run the labelled folder through what the workflow runs for a folder source, with the
    package's functions: the folder plan (identical files merged), the generate step (each file
    read or recorded as failed), scoring, loading the candidates, selection. No embedder: identity
    is not judged. Returns (selection rows, {file name: row}) with every file, copies included."""
    from synthlora.backends.folder import folder_plan
    from synthlora.candidates import load_candidates, load_reference
    from synthlora.generation import generate_shot
    from synthlora.io import write_json
    from synthlora.score import score_image
    from synthlora.selection import select

    work = Path(work)
    (work / "images").mkdir(parents=True, exist_ok=True)
    (work / "scores").mkdir(parents=True, exist_ok=True)
    plan = folder_plan(folder)
    write_json(work / "plan.json", plan)
    keys = [s["key"] for s in plan["shots"]]
    gen_cfg = {"device": "cpu", "openai": {}}
    for shot in plan["shots"]:
        image, prov = work / "images" / f"{shot['key']}.png", work / "images" / f"{shot['key']}.json"
        if not prov.exists():
            generate_shot(shot, gen_cfg, None, image, prov, out=io.StringIO())
        score = work / "scores" / f"{shot['key']}.json"
        if not score.exists():
            write_json(score, (scores_cache or {}).get(shot["key"]) or score_image(image, ocr=ocr))
        write_json(work / "scores" / f"{shot['key']}.embedding.json", {"model": "", "vector": None})
    candidates = load_candidates(work / "plan.json", [work / "images" / f"{k}.json" for k in keys],
                                 [work / "scores" / f"{k}.json" for k in keys],
                                 [work / "scores" / f"{k}.embedding.json" for k in keys])
    rows = select(candidates, settings, None, load_reference(reference))
    by_file = {}
    for r in rows:
        by_file[Path(r["file"]).name] = r
        for copy in filter(None, r["copies"].split("; ")):
            by_file[Path(copy).name] = {**r, "selected": False, "reason": f"duplicate: byte-identical copy of {Path(r['file']).name}",
                                        "failed_checks": "identical copy"}
    return rows, by_file


def judge(labels: list[Label], by_file: dict[str, dict]) -> dict[str, dict]:
    """Per defect class: files, kept, how many should have been kept, reasons right; and per
    duplicate group whether exactly one stayed."""
    table: dict[str, dict] = {}
    for label in labels:
        row = by_file[label.file]
        t = table.setdefault(label.defect, {"files": 0, "kept": 0, "should_keep": 0, "reason_right": 0, "wrong": []})
        t["files"] += 1
        t["kept"] += bool(row["selected"])
        t["should_keep"] += label.keep
        right = bool(row["selected"]) if label.keep else (not row["selected"] and label.reason in row["reason"])
        t["reason_right"] += right
        if not right:
            t["wrong"].append(f"{label.file}: {'KEPT' if row['selected'] else row['reason']}")
    groups: dict[str, list[bool]] = {}
    for label in labels:
        if label.group:
            groups.setdefault(label.group, []).append(bool(by_file[label.file]["selected"]))
    table["duplicate groups"] = {"files": len(groups), "kept": sum(sum(g) == 1 for g in groups.values()),
                                 "should_keep": len(groups), "reason_right": sum(sum(g) == 1 for g in groups.values()),
                                 "wrong": [name for name, g in groups.items() if sum(g) != 1]}
    return table
