"""Draws Ada, synthlora's second example character (for groups and multi-concept LoRAs): an
original design made by this script, so no artist's work is involved. Run from the repo root to
redraw reference.png."""

from pathlib import Path

from PIL import Image, ImageDraw


def draw(size: int = 512) -> Image.Image:
    s = size / 512
    im = Image.new("RGB", (size, size), (250, 250, 248))
    d = ImageDraw.Draw(im)

    def box(x0, y0, x1, y1):
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    d.rectangle(box(190, 60, 322, 260), fill=(200, 60, 50))          # long red hair (back)
    d.rectangle(box(204, 150, 308, 330), fill=(240, 240, 235))       # white shirt
    d.rectangle(box(204, 150, 226, 330), fill=(70, 80, 160))         # blue waistcoat edges
    d.rectangle(box(286, 150, 308, 330), fill=(70, 80, 160))
    d.rectangle(box(176, 160, 204, 280), fill=(240, 240, 235))       # sleeves
    d.rectangle(box(308, 160, 336, 280), fill=(240, 240, 235))
    d.ellipse(box(172, 275, 202, 300), fill=(236, 200, 170))         # hands
    d.ellipse(box(310, 275, 340, 300), fill=(236, 200, 170))
    d.polygon([(204 * s, 330 * s), (308 * s, 330 * s), (330 * s, 430 * s), (182 * s, 430 * s)],
              fill=(40, 40, 50))                                     # black skirt
    d.rectangle(box(214, 430, 246, 470), fill=(236, 200, 170))       # legs
    d.rectangle(box(266, 430, 298, 470), fill=(236, 200, 170))
    d.rectangle(box(208, 466, 250, 484), fill=(30, 30, 30))          # black shoes
    d.rectangle(box(262, 466, 304, 484), fill=(30, 30, 30))
    d.ellipse(box(206, 60, 306, 160), fill=(236, 200, 170))          # face
    d.chord(box(200, 50, 312, 110), 180, 360, fill=(200, 60, 50))    # fringe
    d.rectangle(box(224, 98, 250, 120), outline=(20, 20, 20), width=max(1, int(3 * s)))  # round glasses
    d.rectangle(box(262, 98, 288, 120), outline=(20, 20, 20), width=max(1, int(3 * s)))
    d.ellipse(box(232, 104, 242, 114), fill=(110, 70, 40))           # brown eyes
    d.ellipse(box(270, 104, 280, 114), fill=(110, 70, 40))
    d.arc(box(240, 124, 272, 144), 20, 160, fill=(150, 60, 60), width=max(1, int(3 * s)))
    return im


if __name__ == "__main__":
    draw().save(Path(__file__).with_name("reference.png"))
