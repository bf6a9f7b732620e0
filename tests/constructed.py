"""Constructed candidate images whose right answer is known: a simple figure on a plain
background, and the failure modes practitioners reject by eye, each made from a clean image."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

SIZE = 96


def figure(seed: int, background=(255, 255, 255), size: int = SIZE, centre: float | None = None, scale: float = 1.0) -> Image.Image:
    """A character-like figure: head, torso, limbs, with seeded colours and markings so that two
    seeds never look like duplicates."""
    rng = np.random.default_rng(seed)
    im = Image.new("RGB", (size, size), background)
    d = ImageDraw.Draw(im)
    if centre is None:  # a different place and size per seed, as poses and framings vary
        centre, scale = rng.uniform(0.3, 0.7), rng.uniform(0.6, 1.0)
    cx = int(size * centre)
    s = size / 96 * scale
    skin = tuple(int(v) for v in rng.integers(150, 230, 3))
    cloth = tuple(int(v) for v in rng.integers(20, 160, 3))
    d.ellipse([cx - 12 * s, 10 * s, cx + 12 * s, 34 * s], fill=skin)
    d.rectangle([cx - 16 * s, 34 * s, cx + 16 * s, 66 * s], fill=cloth)
    d.rectangle([cx - 14 * s, 66 * s, cx - 3 * s, 90 * s], fill=cloth)
    d.rectangle([cx + 3 * s, 66 * s, cx + 14 * s, 90 * s], fill=cloth)
    arm = int(rng.integers(-20, 30))  # raised, level or lowered
    d.line([cx - 16 * s, 38 * s, cx - 30 * s, (38 + arm) * s], fill=cloth, width=max(2, int(6 * s)))
    d.line([cx + 16 * s, 38 * s, cx + 30 * s, (38 - arm) * s], fill=cloth, width=max(2, int(6 * s)))
    for _ in range(10):  # markings: what makes each picture its own
        x, y = rng.integers(-14, 12), rng.integers(36, 84)
        w, h = rng.integers(2, 8, 2)
        d.rectangle([cx + x * s, y * s, cx + (x + w) * s, (y + h) * s],
                    fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return im


def with_text(im: Image.Image, text: str = "SAMPLE") -> Image.Image:
    im = im.copy()
    font = ImageFont.load_default(size=max(12, round(im.width / 4.5)))
    ImageDraw.Draw(im).text((3, 2), text, fill=(10, 10, 10), font=font)
    return im


def two_figures(seed: int) -> Image.Image:
    left = figure(seed, scale=0.8, centre=0.27)
    right = figure(seed + 1000, scale=0.8, centre=0.73)
    out = np.minimum(np.asarray(left), np.asarray(right))  # both on one white canvas
    return Image.fromarray(out)


def blurred(im: Image.Image, radius: float = 3) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(radius))


def noisy(im: Image.Image, sigma: float = 40, seed: int = 0) -> Image.Image:
    arr = np.asarray(im, dtype=np.float64) + np.random.default_rng(seed).normal(0, sigma, (im.height, im.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def lightly_edited(im: Image.Image, size: int | None = None) -> Image.Image:
    """What a careless pipeline might let through: the reference cropped by 2%, resized and
    given a little more contrast."""
    w, h = im.size
    m = round(min(w, h) * 0.02)
    im = im.crop((m, m, w - m, h - m)).resize((size or w, size or h), Image.LANCZOS)
    return ImageEnhance.Contrast(im).enhance(1.1)
