"""Local models through the workflow vs a plain loop, side by side: images/s of N shots through the
`generate` jobs (diffusers backend, model servers on), of the same N through `generate` with
models.server: false (each job loads the model: the old path), and of a plain diffusers loop in one
process (import, load once, render N) on the same tiny model and settings; then the same for `embed`
(N images) vs a plain transformers loop. The issue's goal: workflow ÷ loop >= 0.9.

Per-image compute decides what the ratio can be: a job costs a process start and a socket round
trip (~0.5-1 s of CPU, on another core than the server's), so tiny images (the demo's 64 px, 4
steps: ~0.1 s each) measure that overhead, not the model. Both are printed: the demo's size, and a
size where one image costs about what a real SDXL image costs on a GPU (seconds).

Usage: python bench/local_generation.py [N] [--cores C]   (default N=16, C=2)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("Snakefile", "rules", "scripts", "config", "characters", "profiles", "envs", "report")

LOOP = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from diffusers import AutoPipelineForText2Image
torch.set_num_threads(1)
shots = json.load(open(sys.argv[1]))
pipe = AutoPipelineForText2Image.from_pretrained(sys.argv[2], dtype=torch.float32)
pipe.set_progress_bar_config(disable=True)
for s in shots:
    pipe(prompt=s["prompt"], negative_prompt=s["negative_prompt"] or None, num_inference_steps=int(s["steps"]),
         guidance_scale=float(s["guidance_scale"]), width=int(s["width"]), height=int(s["height"]),
         generator=torch.Generator("cpu").manual_seed(int(s["seed"]))).images[0].save(f"{sys.argv[3]}/{s['key']}.png")
"""

EMBED_LOOP = r"""
import sys, glob
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor
torch.set_num_threads(1)
model = AutoModel.from_pretrained(sys.argv[1]).eval()
processor = AutoProcessor.from_pretrained(sys.argv[1])
for path in sorted(glob.glob(sys.argv[2] + "/*.png")):
    with Image.open(path) as im, torch.no_grad():
        inputs = processor(images=[im.convert("RGB")], return_tensors="pt")
        model.get_image_features(pixel_values=inputs["pixel_values"])
"""


def timed(cmd, cwd, env):
    """Wall seconds and CPU seconds (this command's children) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=16)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--sizes", default="64x4,256x20", help="comma-separated <pixels>x<steps> settings")
    a = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        root = Path(tmp) / "wf"
        root.mkdir()
        for name in FILES:
            (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, root / name)
        sm = [sys.executable, "-m", "snakemake", "--cores", str(a.cores)]
        timed([*sm, "build_demo_models", "--configfile", "config/config.yaml"], root, env)
        model = str(root / "resources/demo-models/sdxl")
        for setting in a.sizes.split(","):
            px, steps = (int(v) for v in setting.split("x"))
            cfg = root / f"config/bench-{px}.yaml"
            cfg.write_text(f"analyze: {{backend: manual}}\nplan: {{candidates: {a.n}, width: {px}, height: {px}}}\n"
                           f"select: {{count: {max(1, a.n // 2)}, min_count: 1}}\n"
                           f"generate: {{steps: {steps}}}\n")
            base = ["--configfile", "config/config.yaml", str(cfg.relative_to(root))]
            for d in ("results", "logs", ".snakemake/metadata"):
                shutil.rmtree(root / d, ignore_errors=True)
            timed([*sm, "--until", "plan", *base], root, env)
            shots = json.loads((root / "results/mira/plan.json").read_text())["shots"]
            (root / "shots.json").write_text(json.dumps(shots))
            targets = [f"results/mira/images/{s['key']}.png" for s in shots]
            dry, _ = timed([*sm, *targets, *base, "-n"], root, env)
            res = server_and_per_job(sm, targets, base, root, env)
            out = root / "loop"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            res["loop"] = timed([sys.executable, "-c", LOOP, str(root / "shots.json"), model, str(out)], root, env)
            # The workflow encodes prompts in 75-token chunks (backends/diffusers_gen.py), the loop as the
            # pipeline does (it truncates): the same picture only for prompts of at most 75 tokens.
            same = max(mean_abs_diff(out / f"{s['key']}.png", root / f"results/mira/images/{s['key']}.png")
                       for s in shots)
            rows.append((f"generate {px}x{px}, {steps} steps, CFG {shots[0]['guidance_scale']}", res, dry, same))

        # embed: N images (those of the last setting) through `embed` vs a plain loop
        emb = [f"results/mira/scores/{s['key']}.embedding.json" for s in shots]
        res = server_and_per_job(sm, emb, base, root, env)
        dry, _ = timed([*sm, *emb, *base, "-n"], root, env)
        res["loop"] = timed([sys.executable, "-c", EMBED_LOOP, str(root / "resources/demo-models/embedder"),
                             str(root / "results/mira/images")], root, env)
        rows.append(("embed (demo CLIP embedder)", res, dry, None))

    print(f"N={a.n} images, snakemake --cores {a.cores}, OMP_NUM_THREADS=1; load average now "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (wall ratios are only fair on an idle machine; "
          "CPU ratios hold under load)")
    print(f"{'stage and settings':40} {'wall s loop/server/per-job':>27} {'server÷loop':>11} {'(no start-up)':>13} "
          f"{'per-job÷loop':>12} {'CPU s loop/server/per-job':>26} {'server÷loop':>11} {'per-job÷loop':>12}  pixels vs loop")
    for name, res, dry, same in rows:
        (lw, lc), (sw, sc), (pw, pc) = res["loop"], res["server"], res["per job"]
        print(f"{name:40} {f'{lw:.1f}/{sw:.1f}/{pw:.1f}':>27} {lw / sw:11.2f} {lw / max(sw - dry, 1e-9):13.2f} "
              f"{lw / pw:12.2f} {f'{lc:.1f}/{sc:.1f}/{pc:.1f}':>26} {lc / sc:11.2f} {lc / pc:12.2f}  "
              f"{'' if same is None else f'{same:.2f} levels'}")
    print("ratios: images/s through the workflow ÷ images/s of the plain loop (1.00: as fast; goal >= 0.9), by wall "
          "time and by CPU time (the servers' CPU included); '(no start-up)' leaves out snakemake's own start-up and "
          "DAG (a dry run of the same targets), paid once per run. 'pixels vs loop': mean |difference| in 0-255 levels; "
          "the planned prompts are longer than CLIP's 75 tokens, which the workflow encodes in chunks "
          "(backends/diffusers_gen.py) and the plain pipeline call truncates, so the pictures differ; the work per image "
          "differs only by those extra text-encoder passes")


def server_and_per_job(sm: list[str], targets: list[str], base: list[str], root: Path, env: dict) -> dict:
    """(wall, CPU) of making ``targets`` anew through the workflow with model servers and with a model
    load per job; the servers' CPU is added (they are not snakemake's children)."""
    res = {}
    for label, extra in (("server", "models: {server: true}\n"), ("per job", "models: {server: false}\n")):
        (root / "config/bench-models.yaml").write_text(extra)
        for t in targets:
            (root / t).unlink(missing_ok=True)
        wall, cpu = timed([*sm, *targets, *base, "config/bench-models.yaml"], root, env)
        res[label] = (wall, cpu + stop_servers(root))
    return res


def stop_servers(root: Path) -> float:
    """Stop the run's model servers (they would idle out by themselves; the next measurement should
    not share a core with them) and return their CPU seconds: a server is no child of snakemake's,
    so its CPU time is not in the run's."""
    import re
    import signal

    cpu = 0.0
    for log in (root / "logs/models").glob("*.log"):
        for pid in set(re.findall(r"pid (\d+): listening", log.read_text())):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
                os.kill(int(pid), signal.SIGTERM)
            except (ProcessLookupError, FileNotFoundError):
                pass
    time.sleep(0.5)
    return cpu


def mean_abs_diff(a: Path, b: Path) -> float:
    import numpy as np
    from PIL import Image

    with Image.open(a) as x, Image.open(b) as y:
        return float(np.abs(np.asarray(x, dtype=float) - np.asarray(y, dtype=float)).mean())


if __name__ == "__main__":
    main()
