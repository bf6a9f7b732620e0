from synthlora.io import write_json
from synthlora.score import score_image
from synthlora.scripting import job

with job(snakemake):
    s = snakemake.params.settings
    write_json(snakemake.output[0], score_image(snakemake.input.image, ocr=s["ocr"],
                                                ocr_min_confidence=s["ocr_min_confidence"]))
