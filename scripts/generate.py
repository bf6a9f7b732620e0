import time

from synthlora.backends import make_generator
from synthlora.io import atomic_path, write_json
from synthlora.scripting import job

with job(snakemake):
    shot = snakemake.params.shot
    settings = {**{k: shot[k] for k in ("backend", "model", "dtype") if k in shot},
                "device": snakemake.config["generate"]["device"]}
    started = time.time()
    image, extra = make_generator(settings).generate(shot)
    with atomic_path(snakemake.output.image) as tmp:
        image.save(tmp, format="PNG")
    write_json(snakemake.output.provenance, {
        "shot": shot, "source": extra.pop("source", "generated"), "seconds": round(time.time() - started, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    })
