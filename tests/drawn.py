"""Mira drawn the way a generator or an artist's tool draws a character: flat anime style on
white, dark outlines, flat fills, a face with big eyes, hair, clothes with fold lines, in varied
views, poses, expressions and framings. Deterministic: the same arguments give the same pixels.

Selection's detectors are calibrated on these pictures (tests/labelled.py builds the labelled
set from them), not on noise or rectangles: line art has thin dark strokes that a naive OCR
reads as letters and a naive noise estimate reads as noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Mira's design (characters/mira/description.md): dark-blue bob with a fringe, a yellow star
# hairpin, teal eyes, an orange hooded jacket, a dark belt with a brass buckle, dark-green
# trousers, red ankle boots.
INK = (38, 30, 42)
SKIN = (252, 226, 206)
SKIN_SHADE = (236, 196, 178)
HAIR = (42, 62, 128)
HAIR_LINE = (26, 36, 84)
EYE = (28, 160, 150)
JACKET = (236, 128, 48)
JACKET_LINE = (190, 90, 30)
BELT = (58, 58, 70)
BRASS = (206, 172, 64)
TROUSERS = (52, 96, 66)
TROUSERS_LINE = (34, 66, 44)
BOOTS = (172, 46, 46)
STAR = (246, 212, 60)
MOUTH = (150, 50, 60)
BLUSH = (246, 170, 170)

# Model space: the head's top at y=0, the soles at y~960, the body's axis at x=0.
FRAMINGS = {  # model-space rows a framing shows (top, bottom)
    "full body": (-70, 1010),
    "cowboy shot": (-60, 700),
    "upper body": (-50, 470),
    "portrait": (-40, 290),
}
VIEWS = {"front view": 0.0, "three-quarter view left": -0.6, "three-quarter view right": 0.6,
         "from behind": None}
ARMS = {  # (upper-arm angle, forearm angle) in degrees from hanging straight down, per side (left, right)
    "standing": ((12, 6), (12, 6)),
    "waving": ((12, 6), (150, 165)),
    "arms crossed": ((22, 100), (22, 100)),
    "hands on hips": ((45, -60), (45, -60)),
    "reaching": ((80, 85), (14, 4)),
}
EXPRESSIONS = ("smile", "closed mouth", "open mouth", "surprised", "blush", "serious")
LEGS = {"standing": (0, 0), "walking": (-40, 34), "wide stance": (-36, 36)}


@dataclass(frozen=True)
class Pose:
    view: str = "front view"
    arms: str = "standing"
    legs: str = "standing"
    expression: str = "smile"
    framing: str = "full body"
    shift: float = 0.0      # horizontal offset of the figure, fraction of the picture width
    zoom: float = 1.0       # > 1: the figure fills more of the picture

    @property
    def tags(self) -> dict[str, str]:
        pose = self.arms if self.arms != "standing" else ("walking" if self.legs == "walking" else "standing")
        return {"views": self.view, "poses": pose, "expressions": self.expression, "framings": self.framing}


SUPERSAMPLE = 3


def draw(pose: Pose, size: int = 256, background=(255, 255, 255), line: float = 2.2) -> Image.Image:
    """One picture of Mira: drawn at 3x and reduced, so edges are anti-aliased as in real art."""
    big = Image.new("RGB", (size * SUPERSAMPLE, size * SUPERSAMPLE), background)
    paint(ImageDraw.Draw(big), pose, size * SUPERSAMPLE, line * SUPERSAMPLE)
    return big.reduce(SUPERSAMPLE)


def paint(d: ImageDraw.ImageDraw, pose: Pose, canvas: int, line: float) -> None:
    """Draw Mira onto ``d`` (a canvas x canvas picture), framed as ``pose`` says."""
    top, bottom = FRAMINGS[pose.framing]
    k = canvas / (bottom - top) * pose.zoom
    ox = canvas / 2 + pose.shift * canvas
    oy = -top * k + (canvas - (bottom - top) * k) / 2 if pose.framing == "full body" else -top * k

    def P(x, y):
        return (ox + x * k, oy + y * k)

    def pts(points):
        return [P(x, y) for x, y in points]

    lw = max(1, round(line))
    turn = VIEWS[pose.view]
    behind = turn is None
    t = 0.0 if behind else turn

    def shape(points, fill, width=lw):
        d.polygon(pts(points), fill=fill, outline=INK, width=width)

    def oval(x0, y0, x1, y1, fill, width=lw, outline=INK):
        d.ellipse([*P(x0, y0), *P(x1, y1)], fill=fill, outline=outline, width=width)

    def stroke(points, fill=INK, width=lw):
        d.line(pts(points), fill=fill, width=max(1, round(width)), joint="curve")

    def limb(points, thickness, fill):
        """A thick outlined limb along ``points`` (model units)."""
        w = thickness * k
        d.line(pts(points), fill=INK, width=round(w + 2 * lw), joint="curve")
        for p in (points[0], points[-1]):
            x, y = P(*p)
            r = (w + 2 * lw) / 2
            d.ellipse([x - r, y - r, x + r, y + r], fill=INK)
        d.line(pts(points), fill=fill, width=round(w), joint="curve")
        for p in (points[0], points[-1]):
            x, y = P(*p)
            r = w / 2
            d.ellipse([x - r, y - r, x + r, y + r], fill=fill)

    # back hair and hood, behind everything
    shape([(-96, 70), (-104, 215), (-80, 232), (-60, 212), (-30, 236), (0, 214), (30, 236), (60, 212),
           (80, 232), (104, 215), (96, 70)], HAIR)
    shape([(-92, 178), (92, 178), (86, 236), (-86, 236)], JACKET)

    # legs and boots
    foot_l, foot_r = LEGS[pose.legs]
    for side, foot in ((-1, foot_l), (1, foot_r)):
        hip_in, hip_out = side * 4, side * 64
        knee = (side * 34 + foot * 0.45, 680)
        ankle = (side * 30 + foot, 880)
        shape([(hip_out, 440), (hip_in, 440), (knee[0] - side * 18, knee[1]), (ankle[0] - side * 16, ankle[1]),
               (ankle[0] + side * 22, ankle[1]), (knee[0] + side * 26, knee[1])], TROUSERS)
        stroke([(side * 30, 500), (knee[0] + side * 4, 660)], TROUSERS_LINE)  # fold lines
        stroke([(knee[0] - side * 6, 700), (ankle[0] + side * 2, 850)], TROUSERS_LINE)
        shape([(ankle[0] - side * 20, 866), (ankle[0] + side * 24, 866), (ankle[0] + side * 26, 940),
               (ankle[0] + side * 40, 958), (ankle[0] - side * 24, 958)], BOOTS)

    # torso: jacket, zip, folds, belt
    shape([(-76, 198), (76, 198), (66, 446), (-66, 446)], JACKET)
    stroke([(0, 214), (0, 420)], JACKET_LINE, lw)
    stroke([(-46, 260), (-36, 330)], JACKET_LINE)
    stroke([(44, 280), (36, 360)], JACKET_LINE)
    shape([(-68, 414), (68, 414), (68, 446), (-68, 446)], BELT)
    shape([(-13, 416), (13, 416), (13, 444), (-13, 444)], BRASS)
    if not behind:
        shape([(-34, 198), (0, 250), (34, 198)], SKIN)  # collar opening

    # arms (after the torso: crossed arms lie in front of it)
    for side, (upper, fore) in ((-1, ARMS[pose.arms][0]), (1, ARMS[pose.arms][1])):
        if behind:
            side = -side
        sx, sy = side * 70, 214
        a1, a2 = math.radians(upper), math.radians(upper + fore)
        ex, ey = sx + side * 130 * math.sin(a1), sy + 130 * math.cos(a1)
        if fore < -20:  # elbow out, hand back in (on the hip)
            a2 = math.radians(upper - 110)
        hx, hy = ex + side * 118 * math.sin(a2), ey + 118 * math.cos(a2)
        if pose.arms == "arms crossed":
            hx, hy = -side * 30, 330
        limb([(sx, sy), (ex, ey), (hx, hy)], 34, JACKET)
        oval(hx - 17, hy - 17, hx + 17, hy + 17, SKIN)

    # neck and head
    shape([(-16, 160), (16, 160), (16, 204), (-16, 204)], SKIN)
    face = [(-68, 92), (-66, 60), (-50, 28), (-24, 12), (0, 8), (24, 12), (50, 28), (66, 60), (68, 92),
            (58 + 8 * t, 140), (22 + 14 * t, 174), (8 * t, 180), (-22 + 14 * t, 174), (-58 + 8 * t, 140)]
    shape(face, SKIN)
    if behind:
        shape([(-88, 96), (-86, 24), (-50, -6), (0, -14), (50, -6), (86, 24), (88, 96), (92, 170), (-92, 170)], HAIR)
        for x in (-50, -20, 14, 46):
            stroke([(x, 20), (x * 1.1, 150)], HAIR_LINE)
    else:
        cx = 26 * t  # the face's centre line turns with the view
        eye_y = 104
        for side in (-1, 1):
            ex = cx + side * 32
            near = 1 - 0.35 * max(0.0, side * -t) if t else 1.0  # the far eye narrows
            rx, ry = 15 * near, 20
            if pose.expression == "smile":
                stroke([(ex - rx, eye_y + 4), (ex, eye_y - 8), (ex + rx, eye_y + 4)], INK, lw * 1.6)
            else:
                oval(ex - rx, eye_y - ry, ex + rx, eye_y + ry, (255, 255, 255))
                oval(ex - rx * 0.72, eye_y - ry * 0.72, ex + rx * 0.72, eye_y + ry * 0.82, EYE, outline=None)
                oval(ex - rx * 0.3, eye_y - ry * 0.3, ex + rx * 0.3, eye_y + ry * 0.4, INK, outline=None)
                oval(ex - rx * 0.55, eye_y - ry * 0.6, ex - rx * 0.1, eye_y - ry * 0.15, (255, 255, 255), outline=None)
                stroke([(ex - rx - 3, eye_y - ry + 4), (ex, eye_y - ry - 2), (ex + rx + 3, eye_y - ry + 4)], INK, lw * 1.8)
            brow_y = 70 if pose.expression != "surprised" else 60
            tilt = 6 if pose.expression == "serious" else -2
            stroke([(ex - 12, brow_y), (ex + 12, brow_y - tilt * side)], HAIR_LINE)
        stroke([(cx + 2, 128), (cx - 2, 136)], SKIN_SHADE, lw)  # nose
        my = 152
        if pose.expression in ("smile", "blush"):
            stroke([(cx - 14, my - 3), (cx, my + 5), (cx + 14, my - 3)], MOUTH, lw)
        elif pose.expression == "open mouth":
            oval(cx - 12, my - 6, cx + 12, my + 12, MOUTH)
        elif pose.expression == "surprised":
            oval(cx - 6, my - 6, cx + 6, my + 8, MOUTH)
        else:
            stroke([(cx - 10, my + 2), (cx + 10, my + 2)], MOUTH, lw)
        if pose.expression == "blush":
            for side in (-1, 1):
                oval(cx + side * 42 - 12, 128, cx + side * 42 + 12, 138, BLUSH, outline=None)
        # fringe over the forehead, the top of the head
        shape([(-86, 96), (-88, 30), (-56, -4), (0, -14), (56, -4), (88, 30), (86, 96), (74, 70), (60, 84),
               (48, 56), (30, 82), (14, 56), (-6, 84), (-22, 56), (-40, 80), (-54, 56), (-70, 82)], HAIR)
        for x in (-40, -8, 26):
            stroke([(x + 14 * t, 6), (x + 4 + 14 * t, 46)], HAIR_LINE)
    # an ahoge: a thin strand sticking up (narrow; not a second head)
    stroke([(4, -12), (14, -44), (30, -52)], HAIR_LINE, lw * 2.4)
    # the star hairpin on her right side (the viewer's left from the front)
    sx, sy = (-70 if not behind else 70), 40
    star = [(sx + (22 if i % 2 == 0 else 9) * math.sin(i * math.pi / 5), sy - (22 if i % 2 == 0 else 9) * math.cos(i * math.pi / 5))
            for i in range(10)]
    shape(star, STAR)
