from PIL import Image

from synthlora.backends import make_captioner
from synthlora.io import write_json
from synthlora.scripting import job
from synthlora.selection import ask_yes_no

with job(snakemake):
    questions = dict(snakemake.params.questions)  # question → must-preserve feature (None: select.vlm_questions)
    answers = {}
    if questions:
        captioner = make_captioner({**snakemake.params.settings, "device": snakemake.config["caption"]["device"]})
        with Image.open(snakemake.input.image) as im:
            answers = ask_yes_no(captioner, im.convert("RGB"), list(questions))
    print(answers)
    write_json(snakemake.output[0], {"answers": answers,
                                     "must_preserve": {q: f for q, f in questions.items() if f is not None}})
