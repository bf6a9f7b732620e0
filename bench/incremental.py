"""For each edit of the incremental contract: expensive jobs run ÷ jobs necessary (goal 1.00).

"Necessary" is derived independently of Snakemake: the shots whose key is new after the edit
(or whose image is gone) must be generated; training is necessary only when the selected set
changed. Each edit starts from a copy of one finished run of config/test.yaml.

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
from synthlora.selection import selected_keys  # noqa: E402


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


EDITS = {"4 more candidates": more_candidates, "feature edit (boots)": feature_edit,
         "schema edit, no prompt change": schema_edit, "delete one image": delete_image}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = Workflow(copy_workflow(tmp / "base"))
        print("building the finished base project …", file=sys.stderr)
        base.snakemake()
        rows = []
        for name, edit in EDITS.items():
            wf = base.copy(tmp / name.replace(" ", "_").replace(",", ""))
            before_selected = set(selected_keys(wf.path("results/mira/selection.tsv")))
            configfiles = edit(wf)
            present = {p.stem for p in wf.root.glob("results/mira/images/*.png")}  # after the edit
            run = wf.snakemake(configfiles=configfiles)
            jobs = wf.jobs(run)
            need_generate = len(keys(wf) - present)
            need_train = int(set(selected_keys(wf.path("results/mira/selection.tsv"))) != before_selected)
            rows.append((name, jobs["generate"], need_generate, jobs["train"], need_train))
            shutil.rmtree(wf.root)
    print(f"{'edit':32} {'generate run/needed':>20} {'train run/needed':>17} {'ratio':>6}")
    for name, g, ng, t, nt in rows:
        ratio = (g + t) / (ng + nt) if ng + nt else (1.0 if g + t == 0 else float("inf"))
        print(f"{name:32} {f'{g}/{ng}':>20} {f'{t}/{nt}':>17} {ratio:6.2f}")


if __name__ == "__main__":
    main()
