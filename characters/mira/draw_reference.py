"""Draws Mira, synthlora's example character: an original design made by this script, so no
artist's work is involved anywhere in the demo. Run from the repo root to redraw reference.png."""

from pathlib import Path

from PIL import Image, ImageDraw


def draw(size: int = 512) -> Image.Image:
    s = size / 512
    im = Image.new("RGB", (size, size), (250, 250, 248))
    d = ImageDraw.Draw(im)

    def box(x0, y0, x1, y1):
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    d.ellipse(box(196, 40, 316, 150), fill=(40, 70, 140))            # hair (back)
    d.rectangle(box(200, 150, 312, 300), fill=(230, 120, 40))        # orange hooded jacket
    d.polygon([(256 * s, 160 * s), (236 * s, 210 * s), (276 * s, 210 * s)], fill=(250, 250, 248))
    d.rectangle(box(170, 160, 200, 280), fill=(230, 120, 40))        # sleeves
    d.rectangle(box(312, 160, 342, 280), fill=(230, 120, 40))
    d.ellipse(box(166, 275, 196, 300), fill=(246, 214, 190))         # hands
    d.ellipse(box(316, 275, 346, 300), fill=(246, 214, 190))
    d.rectangle(box(210, 300, 302, 330), fill=(60, 60, 70))          # belt with brass buckle
    d.rectangle(box(246, 304, 266, 326), fill=(200, 170, 60))
    d.rectangle(box(214, 330, 252, 440), fill=(50, 90, 60))          # green trousers
    d.rectangle(box(260, 330, 298, 440), fill=(50, 90, 60))
    d.rectangle(box(206, 440, 254, 470), fill=(120, 40, 40))         # red boots
    d.rectangle(box(258, 440, 306, 470), fill=(120, 40, 40))
    d.ellipse(box(206, 60, 306, 160), fill=(246, 214, 190))          # face
    d.chord(box(200, 50, 312, 120), 180, 360, fill=(40, 70, 140))    # fringe
    d.ellipse(box(228, 100, 246, 118), fill=(30, 160, 150))          # teal eyes
    d.ellipse(box(266, 100, 284, 118), fill=(30, 160, 150))
    d.arc(box(240, 122, 272, 142), 20, 160, fill=(150, 60, 60), width=max(1, int(3 * s)))
    d.polygon([(300 * s, 70 * s), (330 * s, 40 * s), (318 * s, 82 * s)], fill=(240, 210, 60))  # star hairpin
    return im


if __name__ == "__main__":
    draw().save(Path(__file__).with_name("reference.png"))
