"""kohya sd-scripts configs: ``dataset.toml`` and ``train.toml`` from the ``train`` config section.

sd-scripts rejects unknown dataset keys but silently ignores unknown *training* keys and does no
type conversion (FIELD-NOTES), so everything written here is checked against a typed table
first, and the builtin trainer refuses any key it does not implement.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from synthlora.io import content_hash

SCRIPTS = {"sdxl": "sdxl_train_network.py", "sd15": "train_network.py"}

# train.toml keys this project writes, with their sd-scripts types.
TRAIN_KEYS: dict[str, type | tuple[type, ...]] = {
    "pretrained_model_name_or_path": str,
    "network_module": str,
    "network_dim": int,
    "network_alpha": float,
    "network_train_unet_only": bool,
    "optimizer_type": str,
    "learning_rate": float,
    "unet_lr": float,
    "text_encoder_lr": list,
    "lr_scheduler": str,
    "lr_warmup_steps": int,
    "max_train_epochs": int,
    "seed": int,
    "mixed_precision": str,
    "gradient_checkpointing": bool,
    "sdpa": bool,
    "cache_latents": bool,
    "output_dir": str,
    "output_name": str,
    "save_model_as": str,
    "save_precision": str,
    "save_every_n_epochs": int,
    "logging_dir": str,
    "clip_skip": int,
}
DATASET_GENERAL_KEYS = {"caption_extension": str, "shuffle_caption": bool, "keep_tokens": int}
DATASET_KEYS = {"resolution": (int, list), "batch_size": int, "enable_bucket": bool}
SUBSET_KEYS = {"image_dir": str, "num_repeats": int, "class_tokens": str}


class KohyaConfigError(ValueError):
    pass


def saved_epochs(train_cfg: dict) -> list[int]:
    """Epochs whose LoRA is kept: every ``save_every_n_epochs`` and always the last."""
    last, every = int(train_cfg["max_train_epochs"]), int(train_cfg["save_every_n_epochs"])
    return sorted({e for e in range(1, last + 1) if e % every == 0} | {last})


def checkpoint_name(character: str, epoch: int) -> str:
    """sd-scripts' own naming for per-epoch saves."""
    return f"{character}-{epoch:06d}.safetensors"


def subset_dir_name(repeats: int, trigger: str) -> str:
    return f"{repeats}_{trigger}"


def dataset_toml(train_cfg: dict, dataset_dir: str, trigger: str) -> dict:
    return {
        "general": {"caption_extension": ".txt", "shuffle_caption": False, "keep_tokens": 1},
        "datasets": [{
            "resolution": int(train_cfg["resolution"]),
            "batch_size": int(train_cfg["batch_size"]),
            "enable_bucket": False,
            "subsets": [{
                "image_dir": f"{dataset_dir}/{subset_dir_name(train_cfg['num_repeats'], trigger)}",
                "num_repeats": int(train_cfg["num_repeats"]),
                "class_tokens": trigger,
            }],
        }],
    }


def train_toml(train_cfg: dict, character: str, output_dir: str) -> dict:
    te_lr = float(train_cfg["text_encoder_lr"])
    doc = {
        "model": {"pretrained_model_name_or_path": str(train_cfg["base_model"])},
        "network": {
            "network_module": "networks.lora",
            "network_dim": int(train_cfg["network_dim"]),
            "network_alpha": float(train_cfg["network_alpha"]),
            "network_train_unet_only": te_lr == 0.0,
        },
        "optimizer": {
            "optimizer_type": str(train_cfg["optimizer_type"]),
            "learning_rate": float(train_cfg["unet_lr"]),
            "unet_lr": float(train_cfg["unet_lr"]),
            "lr_scheduler": str(train_cfg["lr_scheduler"]),
            "lr_warmup_steps": int(train_cfg["lr_warmup_steps"]),
        },
        "training": {
            "max_train_epochs": int(train_cfg["max_train_epochs"]),
            "save_every_n_epochs": int(train_cfg["save_every_n_epochs"]),
            "seed": int(train_cfg["seed"]),
            "mixed_precision": str(train_cfg["mixed_precision"]),
            "gradient_checkpointing": bool(train_cfg["gradient_checkpointing"]),
            "sdpa": True,
            "cache_latents": True,
        },
        "output": {
            "output_dir": output_dir,
            "output_name": character,
            "save_model_as": "safetensors",
            "save_precision": "float",
        },
    }
    if te_lr:
        doc["optimizer"]["text_encoder_lr"] = [te_lr, te_lr]
    return doc


def _check_table(table: dict, allowed: dict, where: str, source: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise KohyaConfigError(f"{source}: unknown key {key!r} in {where} (known: {', '.join(sorted(allowed))})")
        want = allowed[key]
        if isinstance(value, bool) and want not in (bool,) and not (isinstance(want, tuple) and bool in want):
            raise KohyaConfigError(f"{source}: {where}.{key} = {value!r} must be {getattr(want, '__name__', want)}")
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            raise KohyaConfigError(f"{source}: {where}.{key} = {value!r} must be a float (write {float(value)!r})")
        if not isinstance(value, want):
            raise KohyaConfigError(f"{source}: {where}.{key} = {value!r} must be {getattr(want, '__name__', want)}")


def validate_train(doc: dict, source: str = "train.toml") -> dict[str, Any]:
    """Check every key and type; return the flattened namespace sd-scripts would see."""
    flat: dict[str, Any] = {}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise KohyaConfigError(f"{source}: top-level key {section!r} must be a [section]")
        _check_table(table, TRAIN_KEYS, f"[{section}]", source)
        for key, value in table.items():
            if key in flat:
                raise KohyaConfigError(f"{source}: {key!r} appears in two sections")
            flat[key] = value
    if flat.get("network_alpha", 0) > flat.get("network_dim", 1) * 16:
        raise KohyaConfigError(f"{source}: network_alpha {flat['network_alpha']} is far above network_dim; scale would be alpha/dim")
    return flat


def validate_dataset(doc: dict, source: str = "dataset.toml") -> dict:
    unknown = set(doc) - {"general", "datasets"}
    if unknown:
        raise KohyaConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)} (only [general] and [[datasets]])")
    _check_table(doc.get("general", {}), DATASET_GENERAL_KEYS, "[general]", source)
    for i, ds in enumerate(doc.get("datasets", [])):
        _check_table({k: v for k, v in ds.items() if k != "subsets"}, DATASET_KEYS, f"[[datasets]] #{i + 1}", source)
        for j, sub in enumerate(ds.get("subsets", [])):
            _check_table(sub, SUBSET_KEYS, f"[[datasets.subsets]] #{j + 1}", source)
            if "image_dir" not in sub:
                raise KohyaConfigError(f"{source}: subset #{j + 1} has no image_dir")
    return doc


def write_toml(path: str | Path, doc: dict) -> None:
    from synthlora.io import write_text

    write_text(path, tomli_w.dumps(doc))


def read_toml(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def training_inputs(train_cfg: dict, character: str, output_dir: str, dataset_dir: str, trigger: str,
                    selected: list[str], caption_inputs: dict) -> dict:
    """Everything the LoRA's bytes depend on; its hash is the training fingerprint."""
    return {
        "train": train_toml(train_cfg, character, output_dir),
        "dataset": dataset_toml(train_cfg, dataset_dir, trigger),
        "images": sorted(selected),
        "captions": caption_inputs,
        "backend": train_cfg["backend"],
    }


def fingerprint(inputs: dict) -> str:
    return content_hash(inputs, length=32)
