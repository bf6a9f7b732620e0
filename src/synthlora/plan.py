"""The shot plan: features + shot dimensions → N deterministic shots with content keys.

A shot's key hashes exactly what determines its pixels (generator, model, prompt, negative
prompt, seed, size and generator parameters), so a shot whose text did not change keeps its key,
its image and every per-image result downstream. Shot ``i`` depends only on ``i`` and the
inputs, never on the candidate count, so raising the count appends shots.
"""

from __future__ import annotations

import copy
import random
import string
from typing import Any

from synthlora.feature_text import (DEFAULT_MAPPING, feature_objects, regions_of, summary_text, used_fields,
                                    visible_objects)
from synthlora.io import content_hash

DIMENSIONS = ("views", "poses", "expressions", "framings", "lighting", "backgrounds")
# generate.openai options that change what the Images API returns.
OPENAI_PIXEL_KEYS = ("size", "quality", "background", "output_format", "moderation", "reference_mode", "input_fidelity")
# The placeholder each dimension fills in ``plan.prompt_template``.
PLACEHOLDER = {"views": "view", "poses": "pose", "expressions": "expression", "framings": "framing",
               "lighting": "lighting", "backgrounds": "background"}
# Every placeholder of plan.prompt_template ({description} is the older name of {summary}).
TEMPLATE_FIELDS = ("summary", "description", "objects", "consistency", *PLACEHOLDER.values())
# How the diffusers generator turns a prompt into text-encoder input (backends/diffusers_gen.py). It
# is part of every diffusers shot key: the same prompt encoded another way gives other pixels.
DIFFUSERS_PROMPT_ENCODING = "75-token chunks"
# Longest prompt a generator accepts, in characters (the Images API's documented limit for the
# gpt-image models); the plan fails above it rather than let the server cut or refuse each shot.
PROMPT_CHARACTER_LIMIT = {"openai": 32000}
# What separates the parts of a prompt template; dropped with an empty placeholder.
SEPARATORS = " \t\n,;:."


class PlanError(ValueError):
    pass


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
    if generate_cfg.get("backend") == "diffusers":
        pixels["prompt_encoding"] = DIFFUSERS_PROMPT_ENCODING
    return pixels


def shot_key(shot_pixels: dict) -> str:
    return content_hash(shot_pixels, length=16)


def key_fields(pixels: dict) -> dict:
    """What of a shot reaches its generator's request, and so can change its pixels; the key is
    built from this alone. Each backend declares it: diffusers renders from every pixel field
    (negative prompt and seed included: its keys are as they always were); the Images API gets
    only its request (openai_api.request_key_fields: no negative prompt, no seed, no steps)."""
    if pixels.get("backend") == "openai":
        from synthlora.backends.openai_api import request_key_fields

        return request_key_fields(pixels)
    return pixels


def shot_keys(shots_pixels: list[dict]) -> list[str]:
    """The keys of a plan's shots, in order (call it on every shot of a plan at once). A backend
    with no seed (the Images API) sends byte-identical requests for shots whose sent fields are
    equal; their sample index among those identical requests (0, 1, …) keeps them N distinct
    keys, and stable: adding shots after them changes none of theirs."""
    keys, seen = [], {}
    for pixels in shots_pixels:
        fields = key_fields(pixels)
        if fields is not pixels:  # a request without a seed
            same = content_hash(fields)
            fields = {**fields, "sample": seen.get(same, 0)}
            seen[same] = fields["sample"] + 1
        keys.append(shot_key(fields))
    return keys


def _value_for(dim: str, index: int, values: list[str], seed: int) -> str:
    """Balanced per dimension: every block of len(values) shots uses each value once, in an order
    drawn from a seeded permutation per block, so combinations vary but coverage stays even."""
    block, offset = divmod(index, len(values))
    order = list(values)
    random.Random(f"{seed}:{dim}:{block}").shuffle(order)
    return order[offset]


def fill_template(template: str, texts: dict[str, str]) -> str:
    """``template`` with its placeholders filled. An empty placeholder takes the separator written
    just before it along (', ', '. ', '; '), so a missing optional field leaves no '. .' or ', ,'
    behind; words of the template stay."""
    out = ""
    for literal, name, _spec, _conversion in string.Formatter().parse(template):
        out += literal
        if name is None:
            continue
        value = texts[name].strip()
        out = out + value if value else out.rstrip(SEPARATORS)
    return " ".join(out.lstrip(SEPARATORS).split())


def template_problem(template: str) -> str | None:
    """What is wrong with ``plan.prompt_template``, in words, or None."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        return f"plan.prompt_template is not a valid template ({e}); write placeholders as {{name}} and a literal brace as {{{{"
    unknown = [n for n in names if n not in TEMPLATE_FIELDS]
    if unknown:
        return (f"plan.prompt_template names unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
                f"the placeholders are {', '.join('{' + n + '}' for n in TEMPLATE_FIELDS)}")
    return None


def build_prompt(summary: str, objects: list[dict], phrases: dict[str, str], template: str, consistency: str = "") -> str:
    """One shot's prompt. The character's consistency text goes where the template puts
    {consistency}, or at the end when it does not say: it is never left out."""
    texts = {"summary": summary, "description": summary, "objects": "; ".join(o["text"] for o in objects),
             "consistency": " ".join(consistency.split()), **phrases}
    prompt = fill_template(template, texts)
    if texts["consistency"] and "{consistency}" not in template:
        prompt = f"{prompt}, {texts['consistency']}"
    return prompt


def make_plan(features: dict, plan_cfg: dict, generate_cfg: dict, mapping: dict | None = None,
              consistency: str = "") -> dict:
    """All shots for one character. Pure function of its arguments. ``mapping`` says how the
    features become text (feature_text.prompt_mapping; default: the seed's structure)."""
    mapping = mapping or copy.deepcopy(DEFAULT_MAPPING)
    n = int(plan_cfg["candidates"])
    seed = int(plan_cfg["seed"])
    regions = plan_cfg["regions"]
    gen_pixels = pixel_inputs(generate_cfg)
    summary = summary_text(features, mapping)
    objects = feature_objects(features, mapping)
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
        visible = visible_objects(objects, framing, regions)
        if not summary and not visible:
            raise PlanError(
                f"shot {i} ({tags['framings']}) would have no text about the character: the summary field(s) "
                f"{', '.join(mapping['summary']) or '(none)'} are empty and no object of "
                f"'{mapping['objects'] or '(none)'}' is visible in the framing {tags['framings']!r}; fill those "
                "fields in the features (or say in the schema's \"x-synthlora\" block which fields hold the text)")
        prompt = build_prompt(summary, visible, phrases, plan_cfg["prompt_template"], consistency)
        limit = PROMPT_CHARACTER_LIMIT.get(generate_cfg.get("backend"))
        if limit and len(prompt) > limit:
            raise PlanError(f"shot {i}'s prompt has {len(prompt)} characters, over the {limit} that the "
                            f"{generate_cfg['backend']} generator accepts; shorten the features or plan.prompt_template "
                            "(nothing is cut silently)")
        pixels = {
            **gen_pixels,
            "prompt": prompt,
            "negative_prompt": plan_cfg["negative_prompt"],
            "seed": seed * 1000 + i,
            "width": int(plan_cfg["width"]),
            "height": int(plan_cfg["height"]),
        }
        shots.append({
            "index": i,
            "key": "",
            "tags": tags,
            "objects": [o["name"] for o in visible],
            **pixels,
        })
    pixel_fields = set(gen_pixels) | {"prompt", "negative_prompt", "seed", "width", "height"}
    for shot, key in zip(shots, shot_keys([{k: s[k] for k in s if k in pixel_fields} for s in shots])):
        shot["key"] = key
    return {"shots": shots}


def prompt_report(plan: dict, features: dict, mapping: dict, schema: dict, generate_cfg: dict) -> list[str]:
    """Lines for the plan log: where the prompt text came from, what never reaches a prompt, how
    long the prompts are and what the generator does with long ones."""
    shots = plan["shots"]
    lines = [f"{len(shots)} shots; character text from {', '.join(mapping['summary']) or '(no summary)'}"
             + (f" and the objects of '{mapping['objects']}'" if mapping["objects"] else "")]
    kept = [o["name"] for o in feature_objects(features, mapping) if o["must_preserve"]]
    if kept:
        lines.append(f"must-preserve objects (first in every prompt that shows them): {', '.join(kept)}")
    unused = sorted(set(schema.get("properties", {})) - used_fields(mapping))
    if unused:
        lines.append(f"schema fields that never reach a prompt: {', '.join(unused)}")
    if shots:
        words = [len(s["prompt"].split()) for s in shots]
        lines.append(f"prompt length: {min(words)}-{max(words)} words, "
                     f"{min(len(s['prompt']) for s in shots)}-{max(len(s['prompt']) for s in shots)} characters")
    if generate_cfg.get("backend") == "diffusers":
        lines.append("nothing is shortened: the diffusers generator encodes a prompt longer than its CLIP text "
                     "encoder's 75 tokens in 75-token chunks (as A1111 and ComfyUI do); each image's provenance "
                     "records the prompt's token count and chunks")
    else:
        lines.append("nothing is shortened")
    return lines


def shot_by_key(plan: dict, key: str) -> dict:
    for shot in plan["shots"]:
        if shot["key"] == key:
            return shot
    raise KeyError(f"shot {key} is not in the plan; run `snakemake` again so the plan is current")
