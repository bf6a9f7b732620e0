"""Several characters: groups (shots of the members together) and multi-concept LoRAs.

A group (``groups: {mira_and_ada: [mira, ada]}``) is planned, generated, scored, selected and
captioned like a character, under ``results/<group>/``: its shots are built from each member's
feature text (framing-aware, so a shot names only the features it shows), its selection wants
the member count of figures and each member's identity, and its captions start with every
member's trigger in the group's order. A LoRA entry (``loras: {duo: {members: [mira, ada,
mira_and_ada]}}``) trains one LoRA on a dataset.toml with one subset per character or group, each
with its own repeats and keep_tokens, under ``results/<lora>/``. Without ``groups:`` and
``loras:`` nothing here applies and every character trains its own LoRA, as before.

Torch-free: the workflow's input functions and light rules import it.
"""

from __future__ import annotations

import re
import string
from typing import Any

import numpy as np

from synthlora.io import content_hash

# How a member's place in the picture is said, by member count (left to right).
PLACES = {1: ["alone"], 2: ["on the left", "on the right"], 3: ["on the left", "in the middle", "on the right"]}
GROUP_TEMPLATE_FIELDS = ("count", "members", "pose", "view", "expression", "framing", "lighting", "background",
                         "consistency")


class GroupError(ValueError):
    pass


# ---- config ------------------------------------------------------------------------------------


def groups_of(config: dict) -> dict[str, list[str]]:
    return dict(config.get("groups") or {})


def loras_of(config: dict) -> dict[str, dict]:
    """LoRA name → its entry. A LoRA named after a character whose only member is that character is
    that character's own LoRA (today's layout): it is not listed here."""
    out = {}
    for name, entry in (config.get("loras") or {}).items():
        if name in config["characters"] and list(entry["members"]) == [name]:
            continue
        out[name] = entry
    return out


def trained_names(config: dict) -> list[str]:
    """What gets a LoRA: every character without ``loras:``; with it, exactly the entries it lists."""
    if not config.get("loras"):
        return list(config["characters"])
    return list(config["loras"])


def is_group(config: dict, name: str) -> bool:
    return name in groups_of(config) and name not in config["characters"]


def is_lora(config: dict, name: str) -> bool:
    return name in loras_of(config)


def characters_in(config: dict, name: str) -> list[str]:
    """The characters a character, group or LoRA is made of, in order, each once."""
    if name in config["characters"]:
        return [name]
    members = groups_of(config).get(name) or loras_of(config).get(name, {}).get("members", [])
    return list(dict.fromkeys(c for m in members for c in characters_in(config, m)))


def subject_trigger(config: dict, name: str) -> str:
    """A character's trigger; a group's: its members' triggers in its order, comma-separated (they
    come first in every caption, and keep_tokens covers them)."""
    if name in config["characters"]:
        return config["characters"][name]["trigger"]
    return ", ".join(config["characters"][m]["trigger"] for m in groups_of(config)[name])


def keep_tokens(config: dict, name: str) -> int:
    """Caption tags kept in place (never shuffled) for a subject: all of a group's triggers."""
    keep = int(config["train"].get("keep_tokens", 1))
    return max(keep, len(groups_of(config)[name])) if is_group(config, name) else keep


def subset_dir(config: dict, name: str, repeats: int | None = None) -> str:
    """The kohya subset folder of a character (``{repeats}_{trigger}``, as before) or group
    (``{repeats}_{group}``: its trigger holds commas)."""
    repeats = int(config["train"]["num_repeats"] if repeats is None else repeats)
    return f"{repeats}_{name if is_group(config, name) else config['characters'][name]['trigger']}"


def subject_entry(config: dict, name: str) -> dict:
    """What the rules read about a subject: a character's own entry; for a group or a LoRA an entry
    made from its members' (first member's files, joined triggers and consistency texts)."""
    if name in config["characters"]:
        return config["characters"][name]
    members = characters_in(config, name)
    first = config["characters"][members[0]]
    texts = [" ".join(config["characters"][m].get("consistency", "").split()) for m in members]
    trigger = ", ".join(config["characters"][m]["trigger"] for m in members)
    return {**first, "trigger": trigger, "consistency": ", ".join(dict.fromkeys(t for t in texts if t)),
            "overrides": "", "members": members}


def check_groups(config: dict) -> None:
    """Groups and LoRA entries name known characters and groups, no name is used twice, and the
    group prompt template names known placeholders; each failure names the key and the fix."""
    chars = config["characters"]
    groups = groups_of(config)
    for name, members in groups.items():
        key = f"groups.{name}"
        if name in chars:
            raise GroupError(f"{key}: {name!r} is already a character's name; name the group differently")
        unknown = [m for m in members if m not in chars]
        if unknown:
            raise GroupError(f"{key} names {', '.join(map(repr, unknown))}, which characters: does not have "
                             f"(characters: {', '.join(chars)}); a group's members are characters")
        if len(set(members)) != len(members) or len(members) < 2:
            raise GroupError(f"{key}: a group needs two or more different characters (now {members})")
        if len(members) > max(PLACES):
            raise GroupError(f"{key}: at most {max(PLACES)} members are supported (now {len(members)})")
    triggers = [c["trigger"] for c in chars.values()]
    if len(set(triggers)) != len(triggers) and groups:
        raise GroupError("characters: two characters share a trigger word; each needs its own to be told apart")
    for name, entry in (config.get("loras") or {}).items():
        key = f"loras.{name}"
        if name in groups:
            raise GroupError(f"{key}: {name!r} is already a group's name; name the LoRA differently")
        if name in chars and list(entry["members"]) != [name]:
            raise GroupError(f"{key}: {name!r} is a character's name; a LoRA named after a character may only "
                             f"have that character as member (now {entry['members']}); name it differently")
        unknown = [m for m in entry["members"] if m not in chars and m not in groups]
        if unknown:
            raise GroupError(f"{key}.members names {', '.join(map(repr, unknown))}: not a character or group "
                             f"(characters: {', '.join(chars)}; groups: {', '.join(groups) or 'none'})")
        extra = sorted(set(entry.get("repeats") or {}) - set(entry["members"]))
        if extra:
            raise GroupError(f"{key}.repeats names {extra}, which are not members of {name}")
    template = config["plan"].get("group_prompt_template", "")
    if groups:
        try:
            names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
        except ValueError as e:
            raise GroupError(f"plan.group_prompt_template is not a valid template ({e})") from None
        unknown = sorted(set(names) - set(GROUP_TEMPLATE_FIELDS))
        if unknown or "members" not in names:
            raise GroupError(f"plan.group_prompt_template must contain {{members}} and may use only "
                             f"{', '.join('{' + n + '}' for n in GROUP_TEMPLATE_FIELDS)} (unknown: {unknown})")


# ---- plan --------------------------------------------------------------------------------------


def member_text(features: dict, mapping: dict, framing: dict, regions: dict) -> str:
    """One member's words in a group shot: its summary and the features this framing shows."""
    from synthlora.feature_text import feature_objects, summary_text, visible_objects

    objects = visible_objects(feature_objects(features, mapping), framing, regions)
    return ", ".join(t for t in [summary_text(features, mapping), *(o["text"] for o in objects)] if t)


def make_group_plan(members: list[tuple[str, dict, dict]], plan_cfg: dict, generate_cfg: dict,
                    consistency: str = "") -> dict:
    """All shots of a group: ``members`` is [(name, features, mapping)] in the group's order. Shot
    i's tags are drawn as a character's are (poses from plan.group_poses: interaction poses); its
    prompt names each member's place and feature text, so editing one member's feature changes the
    keys of exactly the shots that show it. Pure function of its arguments."""
    from synthlora.plan import DIMENSIONS, PLACEHOLDER, _value_for, fill_template, pixel_inputs, shot_keys

    n = int(plan_cfg["candidates"])
    seed = int(plan_cfg["seed"])
    gen_pixels = pixel_inputs(generate_cfg)
    tables = {**{d: plan_cfg[d] for d in DIMENSIONS}, "poses": plan_cfg["group_poses"]}
    places = PLACES[len(members)]
    shots = []
    for i in range(n):
        tags, phrases = {}, {}
        for dim in DIMENSIONS:
            tag = _value_for(dim, i, sorted(tables[dim]), seed)
            entry = tables[dim][tag]
            tags[dim] = tag
            phrases[PLACEHOLDER[dim]] = entry["phrase"] if isinstance(entry, dict) else entry
        framing = plan_cfg["framings"][tags["framings"]]
        parts = [f"{place}, {member_text(f, m, framing, plan_cfg['regions'])}"
                 for place, (_, f, m) in zip(places, members)]
        texts = {**phrases, "count": {2: "two", 3: "three"}.get(len(members), str(len(members))),
                 "members": "; ".join(parts), "consistency": " ".join(consistency.split())}
        prompt = fill_template(plan_cfg["group_prompt_template"], texts)
        pixels = {**gen_pixels, "prompt": prompt, "negative_prompt": plan_cfg["negative_prompt"],
                  "seed": seed * 1000 + i, "width": int(plan_cfg["width"]), "height": int(plan_cfg["height"])}
        shots.append({"index": i, "tags": tags, "members": [m[0] for m in members], "pixels": pixels})
    # keys as a character's shots get them: from what the backend sends (plan.shot_keys)
    keys = shot_keys([s["pixels"] for s in shots])
    return {"shots": [{"index": s["index"], "key": key, "tags": s["tags"], "members": s["members"], **s["pixels"]}
                      for s, key in zip(shots, keys)]}


# ---- selection -----------------------------------------------------------------------------------


def centroid(vectors: list[list[float]]) -> list[float] | None:
    """The unit mean of a member's selected images' embeddings: where its identity is."""
    if not vectors:
        return None
    v = np.mean([np.asarray(x, dtype=np.float64) / (np.linalg.norm(x) or 1.0) for x in vectors], axis=0)
    return (v / (np.linalg.norm(v) or 1.0)).tolist()


def member_similarities(candidates: list[dict], centroids: dict[str, list[float] | None]) -> None:
    """Each candidate's cosine similarity to each member's identity centre (``member_similarity``)."""
    for c in candidates:
        if c.get("vector") is None:
            continue
        v = np.asarray(c["vector"], dtype=np.float64)
        v = v / (np.linalg.norm(v) or 1.0)
        c["member_similarity"] = {m: round(float(v @ np.asarray(ctr)), 4)
                                  for m, ctr in centroids.items() if ctr is not None}


def group_checks(members: list[str]):
    """The selection's checks for a group: the single-figure check becomes 'as many figures as
    members', and every member's identity must be there."""
    from synthlora.selection import CHECKS, check, one_figure

    n = len(members)

    @check("wrong number of figures")
    def figure_count(c: dict, s: dict) -> str | None:
        if not s.get("group_figure_check", True):
            return None
        sc = c["score"]
        if sc.get("figures") is not None and sc["figures"] != n:
            return f"wrong number of figures ({sc['figures']} separate figures; the group has {n})"
        if s.get("detect_overlapping_figures", True) and sc.get("heads") is not None and sc["heads"] > n:
            return f"wrong number of figures ({sc['heads']} heads on one outline; the group has {n})"
        return None

    @check("member missing")
    def members_present(c: dict, s: dict) -> str | None:
        sims = c.get("member_similarity") or {}
        low = [f"{m} {sims[m]:.3f}" for m in members if m in sims and sims[m] < s["group_min_member_similarity"]]
        if low:
            return (f"member missing (similarity to the member's selected images: {', '.join(low)} < "
                    f"{s['group_min_member_similarity']})")
        return None

    return [figure_count if chk is one_figure else chk for chk in CHECKS] + [members_present]


# ---- training ------------------------------------------------------------------------------------


def lora_dataset_toml(config: dict, lora: str) -> dict:
    """One dataset.toml for a multi-concept LoRA: a subset per character or group, each with its own
    repeats, its trigger(s) as class tokens and keep_tokens covering them."""
    from synthlora.kohya import dataset_toml, with_defaults

    entry = loras_of(config)[lora]
    c = with_defaults(config["train"])
    doc = dataset_toml(c, f"results/{lora}/dataset", "")
    repeats = entry.get("repeats") or {}
    doc["datasets"][0]["subsets"] = [{
        "image_dir": f"results/{lora}/dataset/{subset_dir(config, m, repeats.get(m, c['num_repeats']))}",
        "num_repeats": int(repeats.get(m, c["num_repeats"])),
        "class_tokens": subject_trigger(config, m),
        "keep_tokens": keep_tokens(config, m),
    } for m in entry["members"]]
    return doc


def lora_training_inputs(config: dict, lora: str, selected: list[str], caption_settings) -> dict:
    """What a multi-concept LoRA's bytes depend on (hashed: its fingerprint), as
    kohya.training_inputs is for one character; ``caption_settings``: name → that subject's."""
    from synthlora.kohya import training_inputs

    members = loras_of(config)[lora]["members"]
    inputs = training_inputs(config["train"], lora, f"results/{lora}/dataset", "", selected,
                             {m: caption_settings(config, m) for m in members})
    inputs["dataset"] = lora_dataset_toml(config, lora)
    inputs["members"] = list(members)
    return inputs


# ---- evaluation ----------------------------------------------------------------------------------


def lora_suite_items(config: dict, lora: str) -> list[dict[str, Any]]:
    """The test prompts of a multi-concept LoRA: every suite once per member's trigger(s), so each
    character alone and each group together is rendered; ``subject`` says whose prompt it is."""
    from synthlora.evaluate import suite_items

    items = []
    for m in loras_of(config)[lora]["members"]:
        for it in suite_items(config["evaluate"], subject_trigger(config, m)):
            items.append({**it, "subject": m, "name": f"{m}-{it['name']}"})
    return items


def trigger_table(items: list[dict], vectors: dict[str, np.ndarray], centres: dict[str, np.ndarray],
                  members_of: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Per prompt subject (a character alone, a group together): mean similarity of its renders to
    each character's training images. A character's own column is its identity; another character's
    column is leakage (e.g. 'ada' prompts drawing mira); for a group, each member's column should be high."""
    rows = []
    for subject in dict.fromkeys(it["subject"] for it in items):
        names = [it["name"] for it in items if it["subject"] == subject and it["name"] in vectors]
        row: dict[str, Any] = {"subject": subject, "images": len(names)}
        for char, centre in centres.items():
            sims = [float(vectors[n] @ centre) for n in names]
            row[char] = round(float(np.mean(sims)), 4) if sims else float("nan")
        own = members_of[subject]
        others = [c for c in centres if c not in own]
        row["own"] = round(float(np.mean([row[c] for c in own])), 4) if own else float("nan")
        row["leakage"] = round(float(max(row[c] for c in others)), 4) if others else float("nan")
        rows.append(row)
    return rows


def run_key(items: list[dict]) -> str:
    return content_hash(items, length=16)


# ---- files -----------------------------------------------------------------------------------------


def side_by_side(paths: list[str], out: str) -> None:
    """The members' references side by side at a common height (written atomically)."""
    from PIL import Image

    from synthlora.io import atomic_path

    images = [Image.open(p).convert("RGB") for p in paths]
    h = min(im.height for im in images)
    images = [im.resize((max(1, round(im.width * h / im.height)), h)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in images), h), (255, 255, 255))
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.width
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")


def build_lora_dataset(out_dir: str, member_datasets: list[str], subsets: list[str]) -> list[int]:
    """Copy each member's dataset subset (images and captions) into the LoRA's dataset as its own
    subset folder; replaces ``out_dir`` whole, atomically. Returns the image count per subset."""
    import shutil
    from pathlib import Path

    from synthlora.io import atomic_dir

    counts = []
    with atomic_dir(out_dir) as tmp:
        for src, name in zip(member_datasets, subsets):
            files = sorted(p for p in Path(src).glob("*/*") if p.suffix in (".png", ".txt"))
            (tmp / name).mkdir()
            for f in files:
                shutil.copyfile(f, tmp / name / f.name)
            counts.append(sum(f.suffix == ".png" for f in files))
    return counts


def lora_card(name: str, inputs, members: dict[str, str], backend: str) -> str:
    """A multi-concept LoRA's MODEL_CARD.md: its triggers, one dataset subset per member, the
    training, and the evaluation per trigger for the delivered epoch and without the LoRA."""
    from pathlib import Path

    from synthlora.io import read_json
    from synthlora.kohya import read_toml
    from synthlora.model_card import md_table
    from synthlora.verify import verified_lora

    best = read_json(inputs.best)
    summary = read_json(inputs.train_summary)
    subsets = read_toml(inputs.dataset_toml)["datasets"][0]["subsets"]
    checked = verified_lora(inputs.lora)
    by_run = {Path(p).parent.name: read_json(p) for p in inputs.triggers}
    lines = [f"# {name}: multi-concept LoRA", "",
             f"One LoRA that knows {', '.join(members)}; each is called by its trigger(s), written first in the prompt:", "",
             md_table(["Member", "Trigger(s)"], [[m, f"`{t}`"] for m, t in members.items()]), "",
             f"Delivered file: `lora/{name}.safetensors` = epoch {best['epoch']}, chosen by {best['rule']}; "
             f"verified: {checked['tensors']} tensors, every tensor's bytes present. Trainer: {backend}, "
             f"{summary.get('steps', '')} steps.", "",
             "## Dataset: one subset per character or group", "",
             md_table(["Subset", "Images", "num_repeats", "keep_tokens", "class_tokens"],
                      [[s["image_dir"].rsplit("/", 1)[1], len(list(Path(s["image_dir"]).glob("*.png"))),
                        s["num_repeats"], s.get("keep_tokens", ""), s["class_tokens"]] for s in subsets]), "",
             "## Evaluation per trigger", "",
             "Mean cosine similarity of each prompt subject's test images to each character's training images "
             "(its embedding centre). A character alone should be close to itself (own) and far from the others "
             "(leakage: the highest similarity to a character the prompt does not name); a group should be close "
             "to every member.", ""]
    for run in ("base", best["run"]):
        rows = by_run.get(run, {}).get("rows", [])
        if not rows:
            continue
        chars = [k for k in rows[0] if k not in ("subject", "images", "own", "leakage")]
        chars.sort(key=lambda c: [r["subject"] for r in rows].index(c) if c in [r["subject"] for r in rows] else len(rows))
        lines += [f"**{'without the LoRA (base)' if run == 'base' else 'delivered epoch ' + run}**", "",
                  md_table(["Prompt subject", "images", *chars, "own", "leakage"],
                           [[r["subject"], r["images"], *(f"{r[c]:.3f}" for c in chars), f"{r['own']:.3f}",
                             "" if r["leakage"] != r["leakage"] else f"{r['leakage']:.3f}"] for r in rows]), ""]
    return "\n".join(lines) + "\n"


def group_feature_questions(features: dict, mappings: dict[str, dict], framing: dict | None,
                            regions: dict) -> dict[str, str]:
    """The must-preserve checks of a group shot: each member's questions (synthlora.feature_text),
    asked about the figure at its place; question → '<member>: <feature>'."""
    from synthlora.feature_text import feature_questions

    members = list(mappings)
    out = {}
    for place, m in zip(PLACES[len(members)], members):
        for q, feature in feature_questions(features["members"][m], mappings[m], framing, regions).items():
            out[re.sub(r"^Is the character's (.+?) in the image", rf"Is the \1 of the character {place} in the image", q)] = \
                f"{m}: {feature}"
    return out
