"""Draw the app icon (a stylised insect over barcode bars) as PNG and ICO with Pillow.

    python packaging/make_icon.py     # writes packaging/linux/bioscan-desktop.{png,ico}
"""
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
OUT = Path(__file__).resolve().parent / "linux"


def draw() -> Image.Image:
    im = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    d = ImageDraw.Draw(im)
    d.rounded_rectangle((8, 8, SIZE - 8, SIZE - 8), radius=48, fill=(28, 94, 82, 255))
    # barcode bars: the four bases in four shades
    shades = [(120, 200, 170), (240, 200, 90), (230, 120, 90), (150, 170, 230)]
    x = 36
    for i, w in enumerate([6, 10, 4, 8, 6, 12, 4, 6, 10, 4, 8, 6, 10, 4, 8]):
        d.rectangle((x, 176, x + w, 224), fill=shades[i % 4] + (255,))
        x += w + 5
    # insect: head, thorax, abdomen, legs, antennae
    c = (250, 250, 245, 255)
    d.ellipse((112, 36, 144, 66), fill=c)
    d.ellipse((104, 66, 152, 106), fill=c)
    d.ellipse((98, 102, 158, 168), fill=c)
    for y, dx in ((78, 44), (92, 50), (112, 46)):
        d.line((108, y, 108 - dx, y + 18), fill=c, width=6)
        d.line((148, y, 148 + dx, y + 18), fill=c, width=6)
    d.line((120, 40, 96, 14), fill=c, width=5)
    d.line((136, 40, 160, 14), fill=c, width=5)
    return im


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    icon = draw()
    icon.save(OUT / "bioscan-desktop.png")
    icon.save(OUT / "bioscan-desktop.ico", sizes=[(256, 256), (64, 64), (48, 48), (32, 32), (16, 16)])
    print(f"wrote {OUT / 'bioscan-desktop.png'} and .ico")
