from PIL import Image

from synthlora.backends import make_captioner
from synthlora.captions import format_caption
from synthlora.io import write_json, write_text
from synthlora.scripting import job

with job(snakemake):
    s = snakemake.params.settings
    captioner = make_captioner({**s, "device": snakemake.config["caption"]["device"]})
    with Image.open(snakemake.input.image) as im:
        tags = captioner.tag(im.convert("RGB"), s["vocabulary"], s["instruction"])
    caption = format_caption(s["trigger"], s["always"], tags, s["categories"])
    print(caption)
    usage = getattr(captioner, "usage", [])  # one record per API call; none for local backends
    for record in usage:
        print(f"API usage: {record}")
    write_json(snakemake.output.usage, usage)
    write_text(snakemake.output.caption, caption + "\n")
