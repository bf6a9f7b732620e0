from synthlora.generation import generate_shot, generator_settings
from synthlora.intake import backdrop_colour
from synthlora.scripting import job
from synthlora.single_file import model_options

with job(snakemake):
    shot = snakemake.params.shot
    cfg = {**snakemake.config["generate"], "model_options": model_options(snakemake.config, shot.get("model", ""))}
    background = backdrop_colour(shot, snakemake.config)
    if generator_settings(shot, cfg)["backend"] == "diffusers":  # a local model: loaded once, by its server
        from synthlora.model_server import run_job

        s = generator_settings(shot, cfg)
        run_job("generate", {k: s[k] for k in ("backend", "model", "dtype", "device", "model_options")},
                {"shot": shot, "gen_cfg": cfg, "reference": snakemake.input.get("reference"),
                 "image": snakemake.output.image, "provenance": snakemake.output.provenance,
                 "background": list(background)},
                snakemake.config, what=snakemake.output.image)
    else:
        generate_shot(shot, cfg, snakemake.input.get("reference"), snakemake.output.image,
                      snakemake.output.provenance, background=background)
