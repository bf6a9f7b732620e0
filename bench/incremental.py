"""For each edit of the incremental contract: expensive jobs run ÷ jobs necessary in ONE plain
`snakemake` invocation (goal 1.00), and what a second invocation still finds to do (goal nothing).

"Necessary" is derived from the files, not from Snakemake: shots whose key is new after the edit
(or whose image is gone) must be generated; a training is necessary when the current training
fingerprint names a folder that did not exist before; each of its saved epochs must then be
rendered and measured; the baseline's metrics must be measured again when the selected images or
the reference changed. Each edit starts from a copy of one finished run of config/test.yaml.

    python bench/incremental.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from conftest import TEST_CONFIG, Workflow, copy_workflow  # noqa: E402
from synthlora.config import load_config  # noqa: E402
from synthlora.kohya import saved_epochs  # noqa: E402
from synthlora.layout import current_fingerprint  # noqa: E402
from synthlora.selection import selected_keys  # noqa: E402

EXPENSIVE = ("generate", "train", "evaluate", "eval_metrics")


def keys(wf):
    return {s["key"] for s in json.loads(wf.path("results/mira/plan.json").read_text())["shots"]}


def more_candidates(wf):
    wf.path("config/more.yaml").write_text("plan:\n  candidates: 12\n")
    return (*TEST_CONFIG, "config/more.yaml")


def feature_edit(wf):
    p = wf.path("characters/mira/features.json")
    data = json.loads(p.read_text())
    next(o for o in data["object"] if o["name"] == "boots")["description"] = "black knee-high boots"
    p.write_text(json.dumps(data))
    return TEST_CONFIG


def schema_edit(wf):
    p = wf.path("config/features.schema.json")
    data = json.loads(p.read_text())
    data["properties"]["age"] = {"type": "string"}
    p.write_text(json.dumps(data))
    return TEST_CONFIG


def delete_image(wf):
    sorted(wf.root.glob("results/mira/images/*.png"))[0].unlink()
    return TEST_CONFIG


def new_reference(wf):
    from PIL import Image, ImageOps

    ref = wf.path("characters/mira/reference.png")
    with Image.open(ref) as im:
        ImageOps.mirror(im.convert("RGB")).save(ref)
    return TEST_CONFIG


def training_value(wf):
    wf.path("config/dim.yaml").write_text("train:\n  network_dim: 8\n  network_alpha: 4.0\n")
    return (*TEST_CONFIG, "config/dim.yaml")


EDITS = {"4 more candidates": more_candidates, "feature edit (boots)": feature_edit,
         "schema edit, no prompt change": schema_edit, "delete one image": delete_image,
         "new reference image": new_reference, "changed training value": training_value}


def necessary(wf, configfiles, before: dict, reference_changed: bool) -> dict:
    cfg = load_config(configfiles, wf.root)
    epochs = len(saved_epochs(cfg["train"]))
    new_training = current_fingerprint(cfg, "mira", wf.root) not in before["trainings"]
    dataset_changed = set(selected_keys(wf.path("results/mira/selection.tsv"))) != before["selected"]
    return {"generate": len(keys(wf) - before["images"]), "train": int(new_training),
            "evaluate": epochs * new_training,
            "eval_metrics": epochs * (new_training or reference_changed) + (dataset_changed or reference_changed)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = Workflow(copy_workflow(tmp / "base"))
        print("building the finished base project …", file=sys.stderr)
        base.snakemake()
        rows = []
        for name, edit in EDITS.items():
            print(f"{name} …", file=sys.stderr)
            wf = base.copy(tmp / name.replace(" ", "_").replace(",", ""))
            before = {"selected": set(selected_keys(wf.path("results/mira/selection.tsv"))),
                      "trainings": {p.name for p in wf.root.glob("results/mira/train/*") if p.is_dir()}}
            configfiles = edit(wf)
            before["images"] = {p.stem for p in wf.root.glob("results/mira/images/*.png")}  # after the edit
            jobs = wf.jobs(wf.snakemake(configfiles=configfiles))
            need = necessary(wf, configfiles, before, edit is new_reference)
            second = wf.jobs(wf.snakemake("-n", configfiles=configfiles))
            rows.append((name, {r: (jobs[r], need[r]) for r in EXPENSIVE}, sum(second.values())))
            shutil.rmtree(wf.root)
    print(f"{'edit':31} " + " ".join(f"{r + ' run/needed':>22}" for r in EXPENSIVE) + f" {'ratio':>6} {'2nd run':>8}")
    for name, counts, second in rows:
        run, needed = sum(r for r, _ in counts.values()), sum(n for _, n in counts.values())
        ratio = run / needed if needed else (1.0 if run == 0 else float("inf"))
        print(f"{name:31} " + " ".join(f"{f'{r}/{n}':>22}" for r, n in counts.values())
              + f" {ratio:6.2f} {f'{second} jobs':>8}")


if __name__ == "__main__":
    main()
