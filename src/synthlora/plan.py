"""The shot plan: features + shot dimensions → N deterministic shots with content keys.

A shot's key hashes exactly what determines its pixels (generator, model, prompt, negative
prompt, seed, size and generator parameters), so a shot whose text did not change keeps its key,
its image and every per-image result downstream. Shot ``i`` depends only on ``i`` and the
inputs, never on the candidate count, so raising the count appends shots.
"""

from __future__ import annotations

import random
import re
from typing import Any

from synthlora.io import content_hash

DIMENSIONS = ("views", "poses", "expressions", "framings", "lighting", "backgrounds")
# generate.openai options that change what the Images API returns.
OPENAI_PIXEL_KEYS = ("size", "quality", "background", "output_format", "moderation", "reference_mode", "input_fidelity")
# The placeholder each dimension fills in ``plan.prompt_template``.
PLACEHOLDER = {"views": "view", "poses": "pose", "expressions": "expression", "framings": "framing",
               "lighting": "lighting", "backgrounds": "background"}


def pixel_inputs(generate_cfg: dict) -> dict[str, Any]:
    """The generator settings that change pixels; everything else (device, retries …) is excluded."""
    ignore = set(generate_cfg.get("key_ignores", [])) | {"device", "key_ignores", "max_concurrent", "retries", "openai", "folder"}
    pixels = {k: v for k, v in sorted(generate_cfg.items()) if k not in ignore}
    if generate_cfg.get("backend") == "openai":
        # Only the Images API parameters enter the key; where the server is, how long to wait and
        # what it costs do not change pixels. Local-pipeline settings do not apply.
        for local in ("steps", "guidance_scale", "dtype"):
            pixels.pop(local, None)
        pixels["openai"] = {k: v for k, v in sorted(generate_cfg["openai"].items()) if k in OPENAI_PIXEL_KEYS}
    return pixels


def shot_key(shot_pixels: dict) -> str:
    return content_hash(shot_pixels, length=16)


def _value_for(dim: str, index: int, values: list[str], seed: int) -> str:
    """Balanced per dimension: every block of len(values) shots uses each value once, in an order
    drawn from a seeded permutation per block, so combinations vary but coverage stays even."""
    block, offset = divmod(index, len(values))
    order = list(values)
    random.Random(f"{seed}:{dim}:{block}").shuffle(order)
    return order[offset]


def regions_of(position: str, regions: dict[str, list[str]]) -> set[str]:
    """Body regions a feature's free-text ``position`` mentions (word-prefix match)."""
    words = re.findall(r"[a-z]+", position.lower())
    found = set()
    for region, keywords in regions.items():
        if any(w.startswith(k) for k in keywords for w in words):
            found.add(region)
    return found


def visible_objects(features: dict, framing: dict, regions: dict[str, list[str]]) -> list[dict]:
    """Feature objects visible in a framing. An object whose position names no known region is
    kept everywhere (better to describe it once too often than to lose it)."""
    shows = set(framing["shows"])
    visible = []
    for obj in features.get("object", []):
        where = regions_of(str(obj.get("position", "")), regions)
        if not where or where & shows:
            visible.append(obj)
    return visible


def build_prompt(features: dict, objects: list[dict], phrases: dict[str, str], template: str) -> str:
    described = "; ".join(
        f"{o['name']}: {o['description']}".strip(": ") for o in objects if o.get("name") or o.get("description")
    )
    return " ".join(template.format(description=features.get("description", "").strip(), objects=described, **phrases).split())


def make_plan(features: dict, plan_cfg: dict, generate_cfg: dict) -> dict:
    """All shots for one character. Pure function of its arguments."""
    n = int(plan_cfg["candidates"])
    seed = int(plan_cfg["seed"])
    regions = plan_cfg["regions"]
    gen_pixels = pixel_inputs(generate_cfg)
    shots = []
    for i in range(n):
        tags, phrases = {}, {}
        for dim in DIMENSIONS:
            table = plan_cfg[dim]
            tag = _value_for(dim, i, sorted(table), seed)
            entry = table[tag]
            tags[dim] = tag
            phrases[PLACEHOLDER[dim]] = entry["phrase"] if isinstance(entry, dict) else entry
        framing = plan_cfg["framings"][tags["framings"]]
        objects = visible_objects(features, framing, regions)
        pixels = {
            **gen_pixels,
            "prompt": build_prompt(features, objects, phrases, plan_cfg["prompt_template"]),
            "negative_prompt": plan_cfg["negative_prompt"],
            "seed": seed * 1000 + i,
            "width": int(plan_cfg["width"]),
            "height": int(plan_cfg["height"]),
        }
        shots.append({
            "index": i,
            "key": shot_key(pixels),
            "tags": tags,
            "objects": [o.get("name", "") for o in objects],
            **pixels,
        })
    return {"shots": shots}


def shot_by_key(plan: dict, key: str) -> dict:
    for shot in plan["shots"]:
        if shot["key"] == key:
            return shot
    raise KeyError(f"shot {key} is not in the plan; run `snakemake` again so the plan is current")
