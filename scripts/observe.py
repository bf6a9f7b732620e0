from synthlora.backends import make_captioner
from synthlora.intake import PictureProblem, open_picture
from synthlora.io import write_json
from synthlora.scripting import job

with job(snakemake):
    s = snakemake.params.settings
    try:
        image, _ = open_picture(snakemake.input.image)
    except PictureProblem as exc:  # nothing to look at: selection rejects it for that
        write_json(snakemake.output[0], {"tags": {}, "error": str(exc)})
    else:
        captioner = make_captioner({**s, "device": snakemake.config["caption"]["device"]})
        tags = captioner.tag(image, s["vocabulary"], s["instruction"])
        print(tags)
        write_json(snakemake.output[0], {"tags": tags, "usage": getattr(captioner, "usage", [])})
