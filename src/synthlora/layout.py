"""Where a character's files are, named by what determines them, and which of them no current
input names any more.

Images, scores and captions are named by their shot key; a training's files (TOMLs, epochs,
state, samples, summary) by its fingerprint under ``results/<c>/train/<fingerprint>/``, and its
evaluation under ``results/<c>/eval/<fingerprint>/``. An edit that changes a key or the
fingerprint leaves the old files in place, so going back to earlier settings finds them built;
``synthlora clean`` lists (and with ``--yes`` removes) what the current plan and training do not
name. The workflow (rules/common.smk) and the command use the same functions here, so they agree
on what is current. Torch-free.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from synthlora.groups import groups_of, is_group, is_lora, lora_training_inputs, loras_of, subject_trigger
from synthlora.kohya import fingerprint, training_inputs

# Files a shot key names, beside images/<key>.png (rules generate, score, embed, ask, observe, caption).
KEYED = {"images": (".png", ".json"), "scores": (".json", ".embedding.json", ".answers.json", ".tags.json"),
         "captions": (".txt", ".usage.json")}
# Files set aside because they did not parse (synthlora.verify): never read again.
DAMAGED_SUFFIX = ".damaged"


def caption_settings(config: dict, name: str) -> dict:
    """Everything a caption's text depends on besides its image."""
    return {
        "trigger": subject_trigger(config, name),  # a group's: every member's, in order
        "vocabulary": {cat: sorted(config["plan"][cat]) for cat in config["caption"]["categories"]},
        **{k: v for k, v in config["caption"].items() if k != "device"},
    }


def training_inputs_for(config: dict, name: str, selected: list[str]) -> dict:
    """What character ``name``'s LoRA depends on, given its selected keys; hashed, the fingerprint."""
    if is_lora(config, name):
        return lora_training_inputs(config, name, selected, caption_settings)
    return training_inputs(config["train"], name, f"results/{name}/dataset", config["characters"][name]["trigger"],
                           selected, caption_settings(config, name))


def training_folder(name: str, fp: str) -> str:
    return f"results/{name}/train/{fp}"


def current_fingerprint(config: dict, name: str, root: str | Path = ".") -> str | None:
    """The fingerprint of the training the current config and selection ask for (None before the
    selection exists)."""
    from synthlora.selection import selected_keys

    selection = Path(root) / "results" / name / "selection.tsv"
    if not selection.is_file() or is_group(config, name):  # a group is trained only within a LoRA
        return None
    return fingerprint(training_inputs_for(config, name, selected_keys(selection)))


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.stat().st_size if path.exists() else 0


def stale_files(config: dict, root: str | Path = ".") -> list[tuple[Path, int, str]]:
    """(path, bytes, why) for every file or folder of the configured characters that the current
    plan and training do not name: images, scores and captions of keys no longer planned, other
    trainings' folders and evaluations, and files set aside as damaged. A character whose plan or
    selection does not exist yet is left alone (nothing can be called stale before it is planned)."""
    root = Path(root)
    out: list[tuple[Path, int, str]] = []
    for name in [*config["characters"], *groups_of(config), *loras_of(config)]:
        base = root / "results" / name
        plan = base / "plan.json"
        if plan.is_file():
            keys = {shot["key"] for shot in json.loads(plan.read_text(encoding="utf-8"))["shots"]}
            for folder, suffixes in KEYED.items():
                for path in sorted((base / folder).glob("*")):
                    key = path.name.split(".", 1)[0]
                    if path.is_file() and any(path.name == key + s for s in suffixes) and key not in keys:
                        out.append((path, _size(path), f"key {key} is not in the current plan"))
        current = current_fingerprint(config, name, root)
        if current is not None:
            for kind in ("train", "eval"):
                for path in sorted((base / kind).glob("*")):
                    if path.is_dir() and len(path.name) == 32 and path.name != current:
                        if kind == "train" and training_in_progress(path):
                            continue
                        out.append((path, _size(path), f"another training than the current {current}"))
        out += [(p, _size(p), "set aside as damaged") for p in sorted(base.rglob(f"*{DAMAGED_SUFFIX}"))]
        old_layout = [*(base / "lora" / n for n in ("epochs", "state", "samples", "train_summary.json", "loss_curve.png")),
                      base / "kohya", *(base / "eval" / n for n in ("metrics.tsv", "best.json", "metrics.html")),
                      *(p for p in sorted(base.glob("eval/[0-9][0-9][0-9][0-9][0-9][0-9]")) if p.is_dir())]
        out += [(p, _size(p), "left from the layout before trainings were named by their fingerprint")
                for p in old_layout if p.exists()]
    return out


def training_in_progress(folder: Path) -> bool:
    """Whether a live process holds the folder's training lock (synthlora.locks)."""
    from synthlora.locks import holder

    return holder(folder / "train.lock") is not None


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
