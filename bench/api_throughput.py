"""N shots through the real generate jobs against the loopback stand-in, latency L, concurrency C.

Prints wall time ÷ (N·L/C): 1.00 is perfect overlap of API calls; the issue's goal is <= 1.10 at
N=80, L=2 s, C=8. Also prints, measured beside it, snakemake's start-up for the same targets (a
dry run) and the ratio without it. Usage: python bench/api_throughput.py [N] [L] [C]
What the same shots cost (synchronous vs batch, requests under faults): bench/api_costs.py.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]

from openai_standin import StandIn  # noqa: E402

N, L, C = (int(sys.argv[1]) if len(sys.argv) > 1 else 80, float(sys.argv[2]) if len(sys.argv) > 2 else 2.0,
           int(sys.argv[3]) if len(sys.argv) > 3 else 8)
KEY = "sk-bench"

with tempfile.TemporaryDirectory() as tmp, StandIn(key=KEY, latency=L) as api:
    root = Path(tmp)
    for name in ("Snakefile", "rules", "scripts", "config", "characters", "profiles", "envs", "report"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, root / name)
    (root / "config/bench.yaml").write_text(
        f"max_concurrent_api_calls: {C}\nanalyze: {{backend: manual}}\nplan: {{candidates: {N}, width: 64, height: 64}}\n"
        f"select: {{count: 1}}\ngenerate:\n  backend: openai\n  model: gpt-image-2\n"
        f"  openai: {{base_url: '{api.url}', api_key_env: BENCH_KEY}}\n")
    env = {**__import__("os").environ, "BENCH_KEY": KEY, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(REPO / "src")}
    base = [sys.executable, "-m", "snakemake", "--cores", str(C), "--configfile", "config/config.yaml", "config/bench.yaml"]
    prep = subprocess.run([*base, "--until", "plan"], cwd=root, env=env, capture_output=True, text=True)
    if prep.returncode:
        sys.exit(prep.stdout[-3000:] + prep.stderr[-3000:])
    keys = [s["key"] for s in json.loads((root / "results/mira/plan.json").read_text())["shots"]]
    targets = [f"results/mira/images/{k}.png" for k in keys]
    # Side by side: the same command as a dry run (start-up, parsing, DAG: what any run pays once).
    started = time.perf_counter()
    dry = subprocess.run([*base[:3], *targets, *base[3:], "-n"], cwd=root, env=env, capture_output=True, text=True)
    startup = time.perf_counter() - started
    if dry.returncode:
        sys.exit(dry.stdout[-3000:] + dry.stderr[-3000:])
    started = time.perf_counter()
    run = subprocess.run([*base[:3], *targets, *base[3:]], cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if run.returncode:
        sys.exit(run.stdout[-3000:] + run.stderr[-3000:])
    ideal = N * L / C
    print(f"N={N} L={L}s C={C}: wall {wall:.1f} s, ideal N*L/C {ideal:.1f} s, ratio {wall / ideal:.2f} "
          f"(start-up, a dry run of the same targets: {startup:.1f} s; without it {(wall - startup) / ideal:.2f}); "
          f"max calls in flight {api.max_in_flight}, image calls {api.calls_to('/images/')}")
