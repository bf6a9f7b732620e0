"""What seed 000's recipe (config/examples/openai-kohya.yaml: 80 gpt-image-2 images, high quality)
costs, measured through the real generate job function against the loopback stand-in:

1. price of the 80 images, synchronous vs Batch API (the estimate's numbers; usd_per_image given below);
2. image-API requests per shot under faults (429 bursts, 5xx, moderation, exhausted quota), each
   beside what the same fault cost before this change where that differs;
3. requests wasted by an edit that changes nothing sent (negative prompt, steps, seed, timeouts,
   batch on/off): the shots whose key changes, now and with the key of every planned field (before).

Usage: python bench/api_costs.py [usd_per_image]   (default 0.211: gpt-image-2 1024x1024 high, ~$17 for 80)
"""

import copy
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "src")]
os.chdir(REPO)

from openai_standin import StandIn  # noqa: E402
from synthlora import generation  # noqa: E402
from synthlora.backends import openai_batch  # noqa: E402
from synthlora.config import load_config  # noqa: E402
from synthlora.generation import estimate, generate_shot  # noqa: E402
from synthlora.io import write_json  # noqa: E402
from synthlora.plan import make_plan, pixel_inputs, shot_key  # noqa: E402

USD = float(sys.argv[1]) if len(sys.argv) > 1 else 0.211
KEY = "sk-bench-costs"
N = 12  # shots per fault scenario (the count)
cfg = load_config(["config/examples/openai-kohya.yaml"])
cfg["generate"]["openai"]["usd_per_image"] = USD
features = json.loads((REPO / "characters/mira/features.json").read_text())

print("1. seed recipe price (80 images, gpt-image-2, high, "
      f"${USD}/image; nothing generated yet)")
sync = estimate(cfg, "/nonexistent")["stages"]["generate"]
print(f"   synchronous ${sync['usd_synchronous']:.2f}   Batch API ${sync['usd_batch']:.2f}   "
      f"(ratio {sync['usd_batch'] / sync['usd_synchronous']:.2f})")


def scenario(name, faults, batch=False, per_shot_before=None):
    generation.STOPPED.clear()
    openai_batch._GAVE_UP.clear()
    os.environ["BENCH_KEY"] = KEY
    with StandIn(key=KEY) as api, tempfile.TemporaryDirectory() as tmp:
        gen = copy.deepcopy(cfg["generate"])
        gen["openai"].update(base_url=api.url, api_key_env="BENCH_KEY", timeout=5, batch=batch,
                             batch_poll_seconds=0.02)
        plan = copy.deepcopy(cfg["plan"])
        plan.update(candidates=N, width=64, height=64)  # 64 px: fast, the same request otherwise
        shots = make_plan(features, plan, pixel_inputs(gen))["shots"]
        write_json(Path(tmp, "results/mira/plan.json"), {"shots": shots})
        for kind, count in faults:
            api.fault(kind, count=count, endpoint="/images/")
        images = Path(tmp, "results/mira/images")
        outcomes = {"ok": 0, "failed": 0, "stopped": 0}
        with open(os.devnull, "w") as log:
            for s in shots:
                try:
                    generate_shot(s, gen, None, images / f"{s['key']}.png", images / f"{s['key']}.json", out=log)
                    status = json.loads((images / f"{s['key']}.json").read_text())["status"]
                    outcomes["ok" if status == "ok" else "failed"] += 1
                except Exception:  # noqa: BLE001 (an account-level stop: counted)
                    outcomes["stopped"] += 1
        image_requests = api.calls_to("/images/")
        all_requests = len(api.calls)
    before = f"   before: {per_shot_before:.2f}/shot" if per_shot_before is not None else ""
    print(f"   {name:34s} {image_requests:3d} image requests for {N} shots = {image_requests / N:.2f}/shot, "
          f"{all_requests} requests in all; {outcomes['ok']} ok, {outcomes['failed']} failed, "
          f"{outcomes['stopped']} stopped{before}")


retries = cfg["generate"]["openai"]["max_retries"]
print(f"2. image-API requests per shot under faults (max_retries {retries})")
scenario("no fault", [])
scenario("429 burst (12 requests refused)", [("429", 12)])
scenario("5xx (6 requests)", [("500", 6)])
scenario("moderation refuses every shot", [("moderation", None)])
scenario("insufficient_quota from the start", [("quota", None)], per_shot_before=retries + 1)
scenario("Batch API, no fault", [], batch=True)
scenario("Batch API, moderation on every shot", [("moderation", None)], batch=True)

print("3. requests wasted by an edit that changes nothing sent (80 shots)")
base_gen = pixel_inputs(cfg["generate"])
base = make_plan(features, cfg["plan"], base_gen)["shots"]


def old_keys(shots):  # the key of every planned pixel field, as before this change
    fields = set(base_gen) | {"prompt", "negative_prompt", "seed", "width", "height"}
    return [shot_key({k: s[k] for k in s if k in fields}) for s in shots]


for name, plan_change, gen_change in (
        ("plan.negative_prompt", {"negative_prompt": "blurry, extra fingers"}, {}),
        ("generate.steps / guidance_scale", {}, {"steps": 5, "guidance_scale": 2.0}),
        ("generate.openai.timeout / max_retries / batch", {}, {"openai": {"timeout": 30, "max_retries": 9, "batch": True}})):
    g = copy.deepcopy(cfg["generate"])
    for k, v in gen_change.items():
        g[k] = {**g[k], **v} if isinstance(v, dict) else v
    other = make_plan(features, {**cfg["plan"], **plan_change}, pixel_inputs(g))["shots"]
    now = sum(a["key"] != b["key"] for a, b in zip(base, other))
    before = sum(a != b for a, b in zip(old_keys(base), old_keys(other)))
    print(f"   {name:46s} re-bought now {now:2d}  (before {before:2d})")
