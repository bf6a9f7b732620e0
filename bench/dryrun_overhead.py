"""`snakemake -n` on a finished 1000-shot synthlora project ÷ the same on a bare Snakefile with
the same job shape and count. Goal ≤ 1.5: the checkpoints, params functions and plan lookups
must not make asking "what is stale?" slow.

The 1000-shot project is finished for real on the tiny demo models, except the per-image outputs
(images, scores, embeddings, captions), which are written directly so the benchmark takes minutes,
not hours.

    python bench/dryrun_overhead.py [--shots 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from conftest import TEST_CONFIG, copy_workflow  # noqa: E402
from synthlora.io import write_json, write_text  # noqa: E402
from synthlora.score import score_image  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def snakemake(root, *args, config=()):
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    if config:
        cmd += ["--configfile", *config]
    proc = subprocess.run(cmd, cwd=root, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc


def timed_dry_run(root, repeats, config=()):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = snakemake(root, "-n", config=config)
        times.append(time.perf_counter() - t)
        assert "Nothing to be done" in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    return statistics.median(times)


def finished_synthlora(root: Path, shots: int) -> tuple[list[str], int]:
    import numpy as np

    from constructed import figure
    from synthlora.embed import Embedder, embed_file

    copy_workflow(root)
    (root / "config/bench.yaml").write_text(f"plan:\n  candidates: {shots}\nselect:\n  count: 48\n")
    config = (*TEST_CONFIG, "config/bench.yaml")
    snakemake(root, "build_demo_models", config=config)  # the tiny models, for the stages run for real
    snakemake(root, "--until", "plan", config=config)
    plan = json.loads((root / "results/mira/plan.json").read_text())
    rng = np.random.default_rng(0)
    base = root / "results/mira"
    embedder = Embedder(str(root / "resources/demo-models/embedder"), device="cpu")
    for shot in plan["shots"]:
        image = base / "images" / f"{shot['key']}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        figure(int(rng.integers(1 << 30)), size=64).save(image)  # a figure on a plain backdrop: selectable
        write_json(base / "images" / f"{shot['key']}.json", {"shot": shot, "source": "generated"})
        # No OCR: the dry run never reads score content, and Tesseract on 1000 images takes ~20 min.
        write_json(base / "scores" / f"{shot['key']}.json", score_image(image, ocr=""))
        write_json(base / "scores" / f"{shot['key']}.embedding.json", embed_file(embedder, image))
    snakemake(root, "results/mira/selection.tsv", config=config)
    selected = [r.split("\t")[0] for r in (base / "selection.tsv").read_text().splitlines()[1:] if r.split("\t")[1] == "yes"]
    for key in selected:
        write_text(base / "captions" / f"{key}.txt", "mira_sl, solo\n")
        write_json(base / "captions" / f"{key}.usage.json", [])
    snakemake(root, config=config)  # dataset, training and evaluation for real, on the tiny models
    jobs = len(plan["shots"]) * 3 + len(selected) + 20
    return config, jobs


BARE = '''
N = {shots}
K = {selected}
wildcard_constraints:
    i="[0-9]+"
rule all:
    input: expand("img/{{i}}.png", i=range(N)), "lora.bin"
rule gen:
    output: "img/{{i}}.png", "img/{{i}}.json"
    shell: "touch {{output}}"
rule score:
    input: "img/{{i}}.png"
    output: "score/{{i}}.json"
    shell: "touch {{output}}"
rule embed:
    input: "img/{{i}}.png"
    output: "score/{{i}}.embedding.json"
    shell: "touch {{output}}"
checkpoint select:
    input: expand("score/{{i}}.json", i=range(N)), expand("score/{{i}}.embedding.json", i=range(N))
    output: "selection.tsv"
    shell: "touch {{output}}"
rule caption:
    input: "img/{{i}}.png"
    output: "cap/{{i}}.txt"
    shell: "touch {{output}}"
rule dataset:
    input: "selection.tsv", expand("cap/{{i}}.txt", i=range(K))
    output: "dataset.txt"
    shell: "touch {{output}}"
rule lora:
    input: "dataset.txt"
    output: "lora.bin"
    shell: "touch {{output}}"
'''


def finished_bare(root: Path, shots: int, selected: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Snakefile").write_text(BARE.format(shots=shots, selected=selected))
    snakemake(root)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shots", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config, jobs = finished_synthlora(tmp / "synthlora", args.shots)
        finished_bare(tmp / "bare", args.shots, 48)
        ours = timed_dry_run(tmp / "synthlora", args.repeats, config)
        bare = timed_dry_run(tmp / "bare", args.repeats)
    print(f"snakemake -n, finished project, {args.shots} shots (~{jobs} jobs), median of {args.repeats}:")
    print(f"  synthlora  {ours:7.2f} s")
    print(f"  bare       {bare:7.2f} s")
    print(f"  ratio      {ours / bare:7.2f}   (goal <= 1.5)")


if __name__ == "__main__":
    main()
