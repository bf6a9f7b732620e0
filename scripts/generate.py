import time

from synthlora.backends import make_generator
from synthlora.backends.base import ShotFailed
from synthlora.generation import write_failed_shot
from synthlora.io import atomic_path, write_json
from synthlora.scripting import job

with job(snakemake):
    shot = snakemake.params.shot
    gen_cfg = snakemake.config["generate"]
    # The shot's own pixel settings win over today's config: they are what its key names.
    settings = {**{k: shot[k] for k in ("backend", "model", "dtype") if k in shot},
                "device": gen_cfg["device"], "openai": {**gen_cfg["openai"], **shot.get("openai", {})}}
    started = time.time()
    record = {"shot": shot, "source": "generated", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    generator = make_generator(settings, snakemake.input.get("reference"))
    try:
        image, extra = generator.generate(shot)
    except ShotFailed as exc:
        # Recorded, not fatal: the other shots go on; selection rejects this one with the reason.
        print(f"shot {shot['key']} failed: {exc.reason}")
        write_failed_shot(snakemake.output.image, snakemake.output.provenance, {
            **record, "reason": exc.reason, "request_id": exc.request_id, "model": settings["model"],
            "seconds": round(time.time() - started, 3)})
    else:
        # Provenance first, image last: both are atomic, and an interrupted job's outputs are
        # removed by Snakemake and marked incomplete, so neither is trusted alone.
        write_json(snakemake.output.provenance, {**record, "status": "ok", **extra,
                                                 "seconds": round(time.time() - started, 3)})
        with atomic_path(snakemake.output.image) as tmp:
            image.save(tmp, format="PNG")
