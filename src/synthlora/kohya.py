"""kohya sd-scripts configs: ``dataset.toml`` and ``train.toml`` from the ``train`` config section.

sd-scripts rejects unknown dataset keys but silently ignores unknown *training* keys and does no
type conversion (FIELD-NOTES), so everything written here is checked against a typed table
first, together with combinations sd-scripts is known to reject or to ignore without a word,
and the builtin trainer refuses any key it does not implement. Torch-free: light rules import it.
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
    "network_args": list,
    "network_train_unet_only": bool,
    "optimizer_type": str,
    "optimizer_args": list,
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
    "cache_text_encoder_outputs": bool,
    "noise_offset": float,
    "min_snr_gamma": float,
    "max_grad_norm": float,
    "v_parameterization": bool,
    "zero_terminal_snr": bool,
    "output_dir": str,
    "output_name": str,
    "save_model_as": str,
    "save_precision": str,
    "save_every_n_epochs": int,
    "save_state": bool,
    "logging_dir": str,
    "clip_skip": int,
    "tokenizer_cache_dir": str,
    "sample_prompts": str,
    "sample_every_n_epochs": int,
    "sample_sampler": str,
}
DATASET_GENERAL_KEYS = {"caption_extension": str, "shuffle_caption": bool, "keep_tokens": int,
                        "caption_dropout_rate": float}
DATASET_KEYS = {"resolution": (int, list), "batch_size": int, "enable_bucket": bool, "min_bucket_reso": int,
                "max_bucket_reso": int, "bucket_reso_steps": int, "bucket_no_upscale": bool}
SUBSET_KEYS = {"image_dir": str, "num_repeats": int, "class_tokens": str, "shuffle_caption": bool,
               "keep_tokens": int, "caption_dropout_rate": float}

# sd-scripts' own choices (library/train_util.py); anything else fails there, late.
LR_SCHEDULERS = {"linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "adafactor"}
OPTIMIZERS = {"AdamW", "AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion", "Lion8bit",
              "PagedLion8bit", "SGDNesterov", "SGDNesterov8bit", "DAdaptation", "DAdaptAdam", "DAdaptAdaGrad",
              "DAdaptAdan", "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD", "Prodigy", "Adafactor"}
MIXED_PRECISION = {"no", "fp16", "bf16"}
SAVE_PRECISION = {"float", "fp16", "bf16"}

# Defaults of the config schema, for callers that pass a partial train section (tests, tools).
TRAIN_DEFAULTS: dict[str, Any] = {
    "backend": "builtin", "family": "sdxl", "network_module": "networks.lora", "network_args": [],
    "optimizer_type": "AdamW", "optimizer_args": [], "text_encoder_lr": 0.0, "lr_scheduler": "constant",
    "lr_warmup_steps": 0, "save_every_n_epochs": 1, "seed": 42, "mixed_precision": "bf16",
    "gradient_checkpointing": False, "sdpa": True, "cache_latents": True, "cache_text_encoder_outputs": False,
    "noise_offset": 0.0, "min_snr_gamma": 0.0, "max_grad_norm": 1.0, "v_parameterization": False,
    "zero_terminal_snr": False, "keep_tokens": 1, "shuffle_caption": False,
    "caption_dropout_rate": 0.0, "enable_bucket": False, "min_bucket_reso": 256, "max_bucket_reso": 2048,
    "bucket_reso_steps": 64, "clip_skip": 0, "tokenizer_cache_dir": "", "save_state": True,
    "save_precision": "float", "sample_prompts": [], "sample_steps": 20,
    "kohya": {"sd_scripts": "../sd-scripts", "python": "python", "accelerate_args": []},
}


class KohyaConfigError(ValueError):
    pass


def with_defaults(train_cfg: dict) -> dict:
    return {**TRAIN_DEFAULTS, **train_cfg}


def saved_epochs(train_cfg: dict) -> list[int]:
    """Epochs whose LoRA is kept: every ``save_every_n_epochs`` and always the last."""
    last, every = int(train_cfg["max_train_epochs"]), int(train_cfg["save_every_n_epochs"])
    return sorted({e for e in range(1, last + 1) if e % every == 0} | {last})


def checkpoint_name(character: str, epoch: int) -> str:
    """sd-scripts' own naming for per-epoch saves."""
    return f"{character}-{epoch:06d}.safetensors"


def state_name(character: str, epoch: int) -> str:
    """sd-scripts' naming for the training state saved with ``save_state`` (EPOCH_STATE_NAME)."""
    return f"{character}-{epoch:06d}-state"


def subset_dir_name(repeats: int, trigger: str) -> str:
    return f"{repeats}_{trigger}"


def sample_prompt_lines(train_cfg: dict) -> str:
    """sd-scripts' prompt file: one prompt per line with ``--w --h --s --d`` options."""
    c = with_defaults(train_cfg)
    res = int(c["resolution"])
    return "".join(f"{p} --w {res} --h {res} --s {int(c['sample_steps'])} --d {int(c['seed'])}\n"
                   for p in c["sample_prompts"])


def dataset_toml(train_cfg: dict, dataset_dir: str, trigger: str) -> dict:
    c = with_defaults(train_cfg)
    general = {"caption_extension": ".txt", "shuffle_caption": bool(c["shuffle_caption"]),
               "keep_tokens": int(c["keep_tokens"])}
    if float(c["caption_dropout_rate"]):
        general["caption_dropout_rate"] = float(c["caption_dropout_rate"])
    ds = {"resolution": int(c["resolution"]), "batch_size": int(c["batch_size"]),
          "enable_bucket": bool(c["enable_bucket"])}
    if c["enable_bucket"]:
        ds.update(min_bucket_reso=int(c["min_bucket_reso"]), max_bucket_reso=int(c["max_bucket_reso"]),
                  bucket_reso_steps=int(c["bucket_reso_steps"]), bucket_no_upscale=False)
    ds["subsets"] = [{
        "image_dir": f"{dataset_dir}/{subset_dir_name(c['num_repeats'], trigger)}",
        "num_repeats": int(c["num_repeats"]),
        "class_tokens": trigger,
    }]
    return {"general": general, "datasets": [ds]}


def train_toml(train_cfg: dict, character: str, output_dir: str, sample_prompts: str | None = None) -> dict:
    """The training TOML; ``sample_prompts`` is the prompt file's path (written beside it)."""
    c = with_defaults(train_cfg)
    te_lr = float(c["text_encoder_lr"])
    doc = {
        "model": {"pretrained_model_name_or_path": str(c["base_model"])},
        "network": {
            "network_module": str(c["network_module"]),
            "network_dim": int(c["network_dim"]),
            "network_alpha": float(c["network_alpha"]),
            "network_train_unet_only": te_lr == 0.0,
        },
        "optimizer": {
            "optimizer_type": str(c["optimizer_type"]),
            "learning_rate": float(c["unet_lr"]),
            "unet_lr": float(c["unet_lr"]),
            "lr_scheduler": str(c["lr_scheduler"]),
            "lr_warmup_steps": int(c["lr_warmup_steps"]),
        },
        "training": {
            "max_train_epochs": int(c["max_train_epochs"]),
            "save_every_n_epochs": int(c["save_every_n_epochs"]),
            "save_state": bool(c["save_state"]),
            "seed": int(c["seed"]),
            "mixed_precision": str(c["mixed_precision"]),
            "gradient_checkpointing": bool(c["gradient_checkpointing"]),
            "sdpa": bool(c["sdpa"]),
            "cache_latents": bool(c["cache_latents"]),
            # written even at sd-scripts' default (1.0): both trainers read the same value from here
            "max_grad_norm": float(c["max_grad_norm"]),
        },
        "output": {
            "output_dir": output_dir,
            "output_name": character,
            "save_model_as": "safetensors",
            "save_precision": str(c["save_precision"]),
        },
    }
    if c["network_args"]:
        doc["network"]["network_args"] = [str(a) for a in c["network_args"]]
    if c["optimizer_args"]:
        doc["optimizer"]["optimizer_args"] = [str(a) for a in c["optimizer_args"]]
    if te_lr:
        doc["optimizer"]["text_encoder_lr"] = [te_lr, te_lr] if c["family"] == "sdxl" else [te_lr]
    t = doc["training"]
    if c["cache_text_encoder_outputs"]:
        t["cache_text_encoder_outputs"] = True
    if float(c["noise_offset"]):
        t["noise_offset"] = float(c["noise_offset"])
    if float(c["min_snr_gamma"]):
        t["min_snr_gamma"] = float(c["min_snr_gamma"])
    if int(c["clip_skip"]):
        t["clip_skip"] = int(c["clip_skip"])
    if c["v_parameterization"]:  # a v-prediction base (and, with it, zero terminal SNR where it was trained so)
        doc["model"]["v_parameterization"] = True
    if c["zero_terminal_snr"]:
        t["zero_terminal_snr"] = True
    if c["tokenizer_cache_dir"]:
        doc["model"]["tokenizer_cache_dir"] = str(c["tokenizer_cache_dir"])
    if c["sample_prompts"] and sample_prompts:
        doc["sample"] = {"sample_prompts": sample_prompts, "sample_every_n_epochs": int(c["save_every_n_epochs"]),
                         "sample_sampler": "euler_a"}
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


def _key_value_list(flat: dict, key: str, source: str) -> None:
    for item in flat.get(key, []):
        if not isinstance(item, str) or "=" not in item or not item.split("=", 1)[0].strip():
            raise KohyaConfigError(f"{source}: {key} entries must be strings 'name=value' (got {item!r})")


def validate_train(doc: dict, source: str = "train.toml", family: str | None = None) -> dict[str, Any]:
    """Check every key, type and known-bad combination; return the flattened namespace sd-scripts
    would see. ``family`` ('sdxl' / 'sd15') enables the family-specific checks."""
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
    for key, choices in (("lr_scheduler", LR_SCHEDULERS), ("mixed_precision", MIXED_PRECISION),
                         ("save_precision", SAVE_PRECISION)):
        if key in flat and flat[key] not in choices:
            raise KohyaConfigError(f"{source}: {key} {flat[key]!r} is not one of {sorted(choices)}")
    opt = flat.get("optimizer_type")
    if opt is not None and opt not in OPTIMIZERS and "." not in opt:
        raise KohyaConfigError(f"{source}: optimizer_type {opt!r} is neither an sd-scripts optimizer "
                               f"({', '.join(sorted(OPTIMIZERS))}) nor a 'module.Class' path")
    _key_value_list(flat, "network_args", source)
    _key_value_list(flat, "optimizer_args", source)
    if flat.get("lr_warmup_steps", 0) and flat.get("lr_scheduler", "constant") == "constant":
        raise KohyaConfigError(f"{source}: lr_warmup_steps = {flat['lr_warmup_steps']} is ignored by lr_scheduler "
                               "'constant'; use 'constant_with_warmup' or set lr_warmup_steps to 0")
    if flat.get("lr_scheduler") == "adafactor" and opt != "Adafactor":
        raise KohyaConfigError(f"{source}: lr_scheduler 'adafactor' needs optimizer_type 'Adafactor'")
    if flat.get("cache_text_encoder_outputs") and not flat.get("network_train_unet_only"):
        raise KohyaConfigError(f"{source}: cache_text_encoder_outputs needs network_train_unet_only "
                               "(text_encoder_lr 0): cached outputs cannot train the text encoders")
    for key in ("noise_offset", "min_snr_gamma", "max_grad_norm"):
        if flat.get(key, 0) < 0:
            raise KohyaConfigError(f"{source}: {key} must be >= 0 (got {flat[key]})")
    if "clip_skip" in flat:
        if family == "sdxl":
            raise KohyaConfigError(f"{source}: clip_skip is an SD1.5 option; sdxl_train_network.py ignores it "
                                   "(SDXL always uses the penultimate layer)")
        if not 1 <= flat["clip_skip"] <= 12:
            raise KohyaConfigError(f"{source}: clip_skip must be 1..12 (got {flat['clip_skip']})")
    if family == "sdxl" and len(flat.get("text_encoder_lr", [0, 0])) not in (1, 2):
        raise KohyaConfigError(f"{source}: text_encoder_lr takes one or two values for SDXL")
    if family == "sd15" and len(flat.get("text_encoder_lr", [0])) != 1:
        raise KohyaConfigError(f"{source}: text_encoder_lr takes one value for SD1.5 (one text encoder)")
    if flat.get("sample_prompts") and "sample_every_n_epochs" not in flat:
        raise KohyaConfigError(f"{source}: sample_prompts without sample_every_n_epochs never samples")
    return flat


def validate_dataset(doc: dict, source: str = "dataset.toml", flat_train: dict | None = None) -> dict:
    unknown = set(doc) - {"general", "datasets"}
    if unknown:
        raise KohyaConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)} (only [general] and [[datasets]])")
    general = doc.get("general", {})
    _check_table(general, DATASET_GENERAL_KEYS, "[general]", source)
    if not doc.get("datasets"):
        raise KohyaConfigError(f"{source}: no [[datasets]]")
    for i, ds in enumerate(doc["datasets"]):
        where = f"[[datasets]] #{i + 1}"
        _check_table({k: v for k, v in ds.items() if k != "subsets"}, DATASET_KEYS, where, source)
        res = ds.get("resolution", 512)
        side = max(res) if isinstance(res, list) else res
        if ds.get("enable_bucket"):
            step = ds.get("bucket_reso_steps", 64)
            if step % 32:
                raise KohyaConfigError(f"{source}: {where}.bucket_reso_steps = {step} must be divisible by 32")
            lo, hi = ds.get("min_bucket_reso", 256), ds.get("max_bucket_reso", 1024)
            if not lo <= side <= hi:
                raise KohyaConfigError(f"{source}: {where}: resolution {side} must lie within "
                                       f"min_bucket_reso {lo} .. max_bucket_reso {hi}")
        if not ds.get("subsets"):
            raise KohyaConfigError(f"{source}: {where} has no [[datasets.subsets]]")
        seen = set()
        for j, sub in enumerate(ds["subsets"]):
            _check_table(sub, SUBSET_KEYS, f"[[datasets.subsets]] #{j + 1}", source)
            if "image_dir" not in sub:
                raise KohyaConfigError(f"{source}: subset #{j + 1} has no image_dir")
            if sub["image_dir"] in seen:
                raise KohyaConfigError(f"{source}: image_dir {sub['image_dir']!r} twice in {where}; sd-scripts drops the second")
            seen.add(sub["image_dir"])
            merged = {**general, **sub}
            rate = merged.get("caption_dropout_rate", 0.0)
            if not 0.0 <= rate <= 1.0:
                raise KohyaConfigError(f"{source}: caption_dropout_rate must be within 0..1 (got {rate})")
            if flat_train and flat_train.get("cache_text_encoder_outputs"):
                for key in ("shuffle_caption", "caption_dropout_rate"):
                    if merged.get(key):
                        raise KohyaConfigError(f"{source}: {key} cannot work with cache_text_encoder_outputs "
                                               "(captions are encoded once); turn one of them off")
    return doc


def validate_config(train_cfg: dict, character: str = "character") -> None:
    """Build both TOMLs from the config and validate them: bad values fail at startup, naming the key."""
    c = with_defaults(train_cfg)
    tr = train_toml(c, character, "out", "prompts.txt")
    flat = validate_train(tr, "config train", family=c["family"])
    validate_dataset(dataset_toml(c, "dataset", "trigger"), "config train", flat)
    if c["backend"] == "builtin":
        check_builtin(flat, "config train")


# What the builtin trainer implements; any other key or value is refused by name, never ignored.
BUILTIN_TRAIN_KEYS = {
    "pretrained_model_name_or_path", "network_module", "network_dim", "network_alpha",
    "network_train_unet_only", "optimizer_type", "optimizer_args", "learning_rate", "unet_lr",
    "text_encoder_lr", "lr_scheduler", "lr_warmup_steps", "max_train_epochs", "seed", "mixed_precision",
    "gradient_checkpointing", "cache_latents", "cache_text_encoder_outputs", "noise_offset", "min_snr_gamma",
    "max_grad_norm", "v_parameterization", "zero_terminal_snr",
    "output_dir", "output_name", "save_model_as", "save_precision", "save_every_n_epochs", "save_state",
    "clip_skip", "tokenizer_cache_dir", "sample_prompts", "sample_every_n_epochs", "sample_sampler",
    "sdpa",  # diffusers uses PyTorch SDPA already
}
BUILTIN_OPTIMIZERS = {"AdamW", "AdamW8bit"}
BUILTIN_SCHEDULERS = {"constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"}
BUILTIN_OPTIMIZER_ARGS = {"weight_decay", "betas", "eps"}


def check_builtin(flat: dict, source: str) -> None:
    unsupported = sorted(set(flat) - BUILTIN_TRAIN_KEYS)
    if unsupported:
        raise KohyaConfigError(f"{source}: the builtin trainer does not implement {unsupported}; "
                               "remove them or use train.backend: kohya")
    if flat["optimizer_type"] not in BUILTIN_OPTIMIZERS:
        raise KohyaConfigError(f"{source}: optimizer_type {flat['optimizer_type']!r} is not one of "
                               f"{sorted(BUILTIN_OPTIMIZERS)} in the builtin trainer; use train.backend: kohya")
    if flat["lr_scheduler"] not in BUILTIN_SCHEDULERS:
        raise KohyaConfigError(f"{source}: lr_scheduler {flat['lr_scheduler']!r} is not one of "
                               f"{sorted(BUILTIN_SCHEDULERS)} in the builtin trainer")
    if flat.get("network_module") != "networks.lora":
        raise KohyaConfigError(f"{source}: network_module must be 'networks.lora' for the builtin trainer")
    for arg in flat.get("optimizer_args", []):
        name = arg.split("=", 1)[0].strip()
        if name not in BUILTIN_OPTIMIZER_ARGS:
            raise KohyaConfigError(f"{source}: optimizer_args {name!r} is not one the builtin trainer reads "
                                   f"({sorted(BUILTIN_OPTIMIZER_ARGS)})")


def parse_optimizer_args(args: list[str]) -> dict:
    import ast

    out = {}
    for arg in args:
        name, value = (x.strip() for x in arg.split("=", 1))
        try:
            out[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise KohyaConfigError(f"optimizer_args {arg!r}: value is not a Python literal") from None
    return out


def write_toml(path: str | Path, doc: dict) -> None:
    from synthlora.io import write_text

    write_text(path, tomli_w.dumps(doc))


def read_toml(path: str | Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


# Where a training's own files go is named by its fingerprint, so the fingerprint cannot depend on
# that place: the TOMLs it hashes point into this stand-in folder instead.
TRAINING_FOLDER = "<training folder>"


def training_inputs(train_cfg: dict, character: str, dataset_dir: str, trigger: str,
                    selected: list[str], caption_inputs: dict) -> dict:
    """Everything the LoRA's bytes depend on; its hash is the training fingerprint, which names the
    folder the trainer writes into (results/<character>/train/<fingerprint>/)."""
    c = with_defaults(train_cfg)
    return {
        "train": train_toml(c, character, f"{TRAINING_FOLDER}/epochs", f"{TRAINING_FOLDER}/sample_prompts.txt"),
        "dataset": dataset_toml(c, dataset_dir, trigger),
        "images": sorted(selected),
        "captions": caption_inputs,
        "backend": c["backend"],
        "family": c["family"],
        "kohya": c["kohya"] if c["backend"] == "kohya" else None,
        "samples": [c["sample_prompts"], c["sample_steps"]] if c["sample_prompts"] else None,
    }


def in_training_folder(doc: dict, folder: str) -> dict:
    """A train TOML of training_inputs() with its stand-in folder replaced by the real one."""
    return {section: {k: v.replace(TRAINING_FOLDER, folder) if isinstance(v, str) else v for k, v in table.items()}
            for section, table in doc.items()}


def fingerprint(inputs: dict) -> str:
    return content_hash(inputs, length=32)
