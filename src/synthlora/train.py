"""The ``builtin`` trainer: a LoRA with diffusers + peft, driven by the same TOMLs as sd-scripts.

It reads ``dataset.toml`` and ``train.toml``, refuses keys it does not implement (sd-scripts
would silently ignore them), trains SDXL or SD1.5, and writes the kohya key format with ``ss_*``
metadata. Per saved epoch it writes the LoRA, optional sample images and (``save_state``) a
resumable state under ``state/`` of the training's folder; an interrupted job resumes from the
newest state whose fingerprint matches. Latents are cached on disk by image content, VAE and size, so retraining
with other hyperparameters does not re-encode.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from synthlora.kohya import (
    KohyaConfigError,
    check_builtin,
    checkpoint_name,
    parse_optimizer_args,
    read_toml,
    validate_dataset,
    validate_train,
)

# Test hook: SIGKILL this process right after the state of this epoch is saved (an interruption).
FAULT_ENV = "SYNTHLORA_KILL_AFTER_EPOCH"


def load_training_config(train_path: str | Path, dataset_path: str | Path,
                         family: str | None = None) -> tuple[dict, dict]:
    flat = validate_train(read_toml(train_path), str(train_path), family=family)
    check_builtin(flat, str(train_path))
    dataset = validate_dataset(read_toml(dataset_path), str(dataset_path), flat)
    return flat, dataset


def _items(dataset: dict) -> list[dict]:
    general = dataset.get("general", {})
    ext = general.get("caption_extension", ".caption")
    items = []
    for ds in dataset["datasets"]:
        for sub in ds["subsets"]:
            opts = {**general, **sub}
            image_dir = Path(sub["image_dir"])
            for img in sorted(image_dir.glob("*.png")):
                caption = img.with_suffix(ext).read_text(encoding="utf-8").strip()
                items.append({"image": img, "caption": caption, "repeats": int(sub.get("num_repeats", 1)),
                              "dataset": ds, "shuffle": bool(opts.get("shuffle_caption", False)),
                              "keep_tokens": int(opts.get("keep_tokens", 0)),
                              "dropout": float(opts.get("caption_dropout_rate", 0.0))})
    if not items:
        raise KohyaConfigError(f"the dataset has no images ({[s['image_dir'] for d in dataset['datasets'] for s in d['subsets']]})")
    return items


def check_dataset(dataset_dir: str | Path, keys: list[str]) -> None:
    """The dataset folder must hold exactly the images the training's fingerprint names, each with
    its caption and each decodable: a dataset of another selection would train under the wrong
    name, and a damaged image would fail deep inside the trainer without saying which file."""
    from PIL import Image

    images = sorted(Path(dataset_dir).glob("*/*.png"))
    found = {p.stem for p in images}
    if found != set(keys):
        missing, extra = sorted(set(keys) - found), sorted(found - set(keys))
        raise KohyaConfigError(
            f"{dataset_dir} does not hold this training's images ({len(missing)} missing: {missing[:5]}; "
            f"{len(extra)} not selected: {extra[:5]}): run plain `snakemake` so that the dataset is rebuilt first")
    for path in images:
        if not path.with_suffix(".txt").is_file():
            raise KohyaConfigError(f"{path} has no caption {path.with_suffix('.txt').name}: delete {dataset_dir} "
                                   "and run snakemake again (it is rebuilt from images/ and captions/)")
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as exc:
            raise KohyaConfigError(f"dataset image {path} cannot be decoded ({type(exc).__name__}: {exc}): delete "
                                   f"{dataset_dir} and the damaged results/<character>/images/{path.name}, then run "
                                   "snakemake again (the image is generated again for its key)") from None


def caption_for_step(item: dict, rng: random.Random) -> str:
    """sd-scripts' caption handling: dropout, then shuffle the tags after ``keep_tokens``."""
    if item["dropout"] and rng.random() < item["dropout"]:
        return ""
    if not item["shuffle"]:
        return item["caption"]
    tags = [t.strip() for t in item["caption"].split(",")]
    keep, rest = tags[:item["keep_tokens"]], tags[item["keep_tokens"]:]
    rng.shuffle(rest)
    return ", ".join(keep + rest)


def bucket_size(width: int, height: int, ds: dict) -> tuple[int, int]:
    """The training size of an image: square ``resolution``, or its aspect bucket (area budget
    ``resolution``², sides multiples of ``bucket_reso_steps`` within min/max_bucket_reso)."""
    res = ds["resolution"]
    rw, rh = (res, res) if isinstance(res, int) else res
    if not ds.get("enable_bucket"):
        return rw, rh
    step = int(ds.get("bucket_reso_steps", 64))
    lo, hi = int(ds.get("min_bucket_reso", 256)), int(ds.get("max_bucket_reso", 1024))
    area, aspect = rw * rh, width / height
    w = max(lo, min(hi, int((area * aspect) ** 0.5) // step * step))
    h = max(lo, min(hi, int(area / w) // step * step))
    return w, h


def optimizer_name(optimizer, args: dict) -> str:
    """``ss_optimizer`` as sd-scripts writes it: the class's full path, then its arguments."""
    cls = type(optimizer)
    text = ",".join(f"{k}={v}" for k, v in args.items())
    return f"{cls.__module__}.{cls.__name__}" + (f"({text})" if text else "")


def base_model_metadata(model: str) -> dict[str, str]:
    """sd-scripts' base-model entries: a local base is named by its file or folder name; a checkpoint
    file also gets its hashes (legacy: SHA-256 of 64 KiB at 1 MiB, 8 hex digits; new: of the whole file)."""
    path = Path(model)
    if not path.exists():
        return {"ss_sd_model_name": str(model)}
    meta = {"ss_sd_model_name": path.name}
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            f.seek(0x100000)
            h.update(f.read(0x10000))
            meta["ss_sd_model_hash"] = h.hexdigest()[:8]
            f.seek(0)
            full = hashlib.sha256()
            for block in iter(lambda: f.read(1 << 24), b""):
                full.update(block)
        meta["ss_new_sd_model_hash"] = full.hexdigest()
    return meta


def _metadata(flat: dict, dataset: dict, items: list, steps: int, started: float, family: str,
              device: str, optimizer: str | None = None, v_pred: bool = False,
              base: dict[str, str] | None = None) -> dict[str, str]:
    tag_frequency: dict[str, dict[str, int]] = {}
    dirs: dict[str, dict[str, int]] = {}
    for it in items:
        d = it["image"].parent.name
        dirs.setdefault(d, {"n_repeats": it["repeats"], "img_count": 0})["img_count"] += 1
        freq = tag_frequency.setdefault(d, {})
        for tag in {t.strip() for t in it["caption"].split(",") if t.strip()}:
            freq[tag] = freq.get(tag, 0) + 1
    # sd-scripts writes args.text_encoder_lr as it is: None when the text encoders are not trained
    te_lr = flat.get("text_encoder_lr") if not flat.get("network_train_unet_only", True) else None
    meta = {
        "ss_network_module": flat["network_module"],
        "ss_network_dim": str(flat["network_dim"]),
        "ss_network_alpha": str(flat["network_alpha"]),
        "ss_base_model_version": "sdxl_base_v1-0" if family == "sdxl" else "sd_v1",
        "ss_num_epochs": str(flat["max_train_epochs"]),
        "ss_steps": str(steps),
        "ss_learning_rate": str(flat["learning_rate"]),
        "ss_unet_lr": str(flat.get("unet_lr", flat["learning_rate"])),
        "ss_text_encoder_lr": str(te_lr),
        "ss_optimizer": optimizer or flat["optimizer_type"],
        "ss_max_grad_norm": str(flat.get("max_grad_norm", 1.0)),
        "ss_v2": "False",
        "ss_v_parameterization": str(v_pred),
        "ss_zero_terminal_snr": str(bool(flat.get("zero_terminal_snr", False))),
        "ss_lr_scheduler": flat["lr_scheduler"],
        "ss_lr_warmup_steps": str(flat.get("lr_warmup_steps", 0)),
        "ss_mixed_precision": flat["mixed_precision"] if device != "cpu" else "no",  # what really ran
        "ss_seed": str(flat["seed"]),
        "ss_output_name": flat["output_name"],
        "ss_num_train_images": str(sum(it["repeats"] for it in items)),
        "ss_tag_frequency": json.dumps(tag_frequency),
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_resolution": str(dataset["datasets"][0]["resolution"]),
        "ss_enable_bucket": str(bool(dataset["datasets"][0].get("enable_bucket", False))),
        "ss_noise_offset": str(flat.get("noise_offset", "None")),
        "ss_min_snr_gamma": str(flat.get("min_snr_gamma", "None")),
        "ss_clip_skip": str(flat.get("clip_skip", "None")),
        "ss_gradient_checkpointing": str(bool(flat.get("gradient_checkpointing", False))),
        "ss_training_started_at": str(started),
        "ss_training_finished_at": str(time.time()),
        **(base or {"ss_sd_model_name": str(flat["pretrained_model_name_or_path"])}),
        "ss_training_comment": "trained by synthlora builtin trainer (diffusers + peft)",
        "modelspec.architecture": ("stable-diffusion-xl-v1-base/lora" if family == "sdxl" else "stable-diffusion-v1/lora"),
        "modelspec.implementation": ("https://github.com/Stability-AI/generative-models" if family == "sdxl"
                                     else "diffusers"),
        "modelspec.title": flat["output_name"],
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.date": datetime.datetime.fromtimestamp(int(time.time())).isoformat(),
        "modelspec.prediction_type": "v" if v_pred else "epsilon",
        "modelspec.resolution": "{0}x{0}".format(dataset["datasets"][0]["resolution"])
        if isinstance(dataset["datasets"][0]["resolution"], int) else "x".join(map(str, dataset["datasets"][0]["resolution"])),
    }
    return meta


def tensors_hash(state: dict) -> str:
    """``sshs_model_hash`` as sd-scripts computes it (addnet_hash_safetensors): SHA-256 of the
    serialized safetensors file after its header."""
    from safetensors.torch import save

    data = save(state)
    n = int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[8 + n:]).hexdigest()


def _vae_identity(model_path: str) -> str:
    """What the cached latents depend on besides the image: the VAE's weights (by content; a
    checkpoint file, gigabytes, by its path, size and modification time)."""
    if Path(model_path).is_file():
        st = Path(model_path).stat()
        return hashlib.sha256(f"{Path(model_path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    vae_dir = Path(model_path) / "vae"
    files = sorted(vae_dir.glob("*.safetensors")) + sorted(vae_dir.glob("*.bin")) if vae_dir.is_dir() else []
    if not files:
        return hashlib.sha256(str(model_path).encode()).hexdigest()
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes() if f.stat().st_size < (1 << 30) else str(f.stat().st_size).encode())
    return h.hexdigest()


def encode_latents(vae, items: list[dict], cache_dir: str | Path | None, vae_id: str, device: str) -> list:
    """Per item: (mean, std) of the VAE posterior, read from or written to the content cache."""
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    out, hits = [], 0
    for it in items:
        data = it["image"].read_bytes()
        w, h = it["size"]
        key = hashlib.sha256(data + f"|{vae_id}|{w}x{h}".encode()).hexdigest()
        path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
        if path is not None and path.exists():
            out.append(torch.load(path))
            hits += 1
            continue
        with Image.open(it["image"]) as im:
            im = ImageOps.fit(im.convert("RGB"), (w, h), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        pixels = torch.from_numpy(arr).permute(2, 0, 1)[None].to(device, torch.float32)
        with torch.no_grad():
            dist = vae.encode(pixels).latent_dist
        pair = (dist.mean[0].cpu(), dist.std[0].cpu())
        if path is not None:
            from synthlora.io import atomic_path

            with atomic_path(path) as tmp:
                torch.save(pair, tmp)
        out.append(pair)
    print(f"latents: {hits} of {len(items)} from the cache ({cache_dir})", flush=True)
    return out, hits


def loss_target(noise_scheduler, latents, noise, timesteps):
    """What the UNet learns to predict: the noise for an epsilon base, the velocity
    (alpha_t·noise − sigma_t·x0) for a v-prediction base."""
    if noise_scheduler.config.prediction_type == "v_prediction":
        return noise_scheduler.get_velocity(latents, noise, timesteps)
    return noise


def write_loss_curve(losses: list[dict], path: str | Path, title: str = "") -> None:
    """Loss per step and its running mean, with epoch boundaries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from synthlora.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    if losses:
        steps = [r["step"] for r in losses]
        vals = [r["loss"] for r in losses]
        ax.plot(steps, vals, lw=0.8, alpha=0.5, label="loss")
        window = max(1, len(vals) // 20)
        mean = [sum(vals[max(0, i - window + 1):i + 1]) / len(vals[max(0, i - window + 1):i + 1]) for i in range(len(vals))]
        ax.plot(steps, mean, lw=1.6, label=f"mean of {window}")
        last_epoch = None
        for r in losses:
            if r.get("epoch") != last_epoch and last_epoch is not None:
                ax.axvline(r["step"], color="grey", lw=0.5, ls=":")
            last_epoch = r.get("epoch")
        ax.legend(loc="upper right")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training loss")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _find_state(state_dir: Path, fingerprint: str | None, epochs: int) -> Path | None:
    """The newest saved state of this very training (same fingerprint); stale ones are removed."""
    if not fingerprint or not state_dir.is_dir():
        return None
    best = None
    for d in sorted(state_dir.glob("epoch-*")):
        fp = d / "fingerprint.txt"
        if not fp.exists() or fp.read_text().strip() != fingerprint:
            shutil.rmtree(d, ignore_errors=True)
            continue
        if (d / "state.pt").exists() and int(d.name.split("-")[1]) <= epochs:
            best = d
    return best


def publish_epochs(saved: list[dict], state_dir: Path) -> None:
    """Copy every saved epoch's LoRA from state/epoch-N/ to where the summary says it is (the
    training's epochs/), checking each first: a damaged copy is never published."""
    from synthlora.io import atomic_path
    from synthlora.verify import safetensors_problem

    for c in saved:
        src = state_dir / f"epoch-{c['epoch']:06d}" / Path(c["path"]).name
        problem = safetensors_problem(src)
        if problem:
            raise RuntimeError(f"{src}: {problem}. Delete {state_dir} and run snakemake again to train anew")
        with atomic_path(c["path"]) as tmp:
            shutil.copyfile(src, tmp)


def train_lora(train_toml: str | Path, dataset_toml: str | Path, family: str = "sdxl",
               device: str = "auto", fingerprint: str | None = None, state_dir: str | Path | None = None,
               latent_cache_dir: str | Path | None = None, sample_prompts: str | Path | None = None,
               samples_dir: str | Path | None = None, single_file: dict | None = None) -> dict[str, Any]:
    """Train, saving ``{output_dir}/{output_name}-{epoch:06d}.safetensors`` every
    ``save_every_n_epochs`` and after the last epoch; return a summary (steps, losses, files).
    ``single_file``: the config's single_file section, for a base model named by a checkpoint file."""
    if family not in ("sdxl", "sd15"):
        raise KohyaConfigError(f"train.family: the builtin trainer supports 'sdxl' and 'sd15' (got {family!r})")
    flat, dataset = load_training_config(train_toml, dataset_toml, family)

    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import compute_snr
    from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from synthlora.backends.base import load_sd_pipeline, resolve_device
    from synthlora.io import atomic_dir, atomic_path
    from synthlora.lora_format import TEXT_TARGETS, UNET_TARGETS, kohya_text_key, kohya_unet_key, peft_to_kohya

    started = time.time()
    device = resolve_device(device)
    seed = int(flat["seed"])
    torch.manual_seed(seed)
    rng = random.Random(seed)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[flat["mixed_precision"]]
    if device == "cpu":
        weight_dtype = torch.float32  # half precision on CPU is slow and unstable
    save_dtype = {"float": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[flat.get("save_precision", "float")]

    model = flat["pretrained_model_name_or_path"]
    pipe_cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    zero_snr = bool(flat.get("zero_terminal_snr", False))
    pipe = load_sd_pipeline(model, "train.base_model", pipeline=pipe_cls, family=family, single_file=single_file,
                            v_parameterization=bool(flat.get("v_parameterization", False)),
                            zero_terminal_snr=zero_snr, dtype=weight_dtype,
                            **({"safety_checker": None, "requires_safety_checker": False} if family == "sd15" else {}))
    unet, vae = pipe.unet, pipe.vae
    tes = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if family == "sdxl" else [])
    for m in (unet, vae, *tes):
        m.requires_grad_(False)
        m.to(device)
    vae.to(torch.float32)  # the SDXL VAE overflows in fp16
    # The base's prediction type: v_parameterization (as sd-scripts), or what a diffusers folder's scheduler says.
    v_pred = bool(flat.get("v_parameterization")) or pipe.scheduler.config.get("prediction_type") == "v_prediction"
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config, prediction_type="v_prediction" if v_pred else "epsilon",
                                                rescale_betas_zero_snr=zero_snr)
    train_te = not flat.get("network_train_unet_only", True)
    dim, alpha = int(flat["network_dim"]), float(flat["network_alpha"])
    unet.add_adapter(LoraConfig(r=dim, lora_alpha=alpha, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    params = [{"params": [p for p in unet.parameters() if p.requires_grad], "lr": float(flat.get("unet_lr", flat["learning_rate"]))}]
    if train_te:
        te_lrs = flat.get("text_encoder_lr") or [flat["learning_rate"]]
        for i, te in enumerate(tes):
            te.add_adapter(LoraConfig(r=dim, lora_alpha=alpha, target_modules=TEXT_TARGETS, init_lora_weights="gaussian"))
            params.append({"params": [p for p in te.parameters() if p.requires_grad], "lr": float(te_lrs[min(i, len(te_lrs) - 1)])})
    for group in params:
        for p in group["params"]:
            p.data = p.data.float()  # LoRA weights train in fp32 under mixed precision
    if flat.get("gradient_checkpointing"):
        unet.enable_gradient_checkpointing()
        if train_te:
            for te in tes:
                te.gradient_checkpointing_enable()
    opt_args = parse_optimizer_args(flat.get("optimizer_args", []))
    max_grad_norm = float(flat.get("max_grad_norm", 1.0))  # sd-scripts' default when the key is absent
    if flat["optimizer_type"] == "AdamW8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise KohyaConfigError("train.optimizer_type AdamW8bit needs bitsandbytes (pip install bitsandbytes)") from None
        optimizer = bnb.optim.AdamW8bit(params, **opt_args)
    else:
        optimizer = torch.optim.AdamW(params, **opt_args)
    scaler = torch.amp.GradScaler("cuda") if (device.startswith("cuda") and weight_dtype == torch.float16) else None

    items = _items(dataset)
    from PIL import Image

    for it in items:
        with Image.open(it["image"]) as im:
            it["original"] = im.size
        it["size"] = bucket_size(*it["original"], it["dataset"])
    cache = latent_cache_dir if flat.get("cache_latents", True) else None
    latents, cache_hits = encode_latents(vae, items, cache, _vae_identity(model) if cache else "", device)
    batch_size = int(dataset["datasets"][0].get("batch_size", 1))
    clip_skip = int(flat.get("clip_skip", 1) or 1)

    def encode(batch_captions):
        hidden, pooled = [], None
        for tok, te in zip(tokenizers, tes):
            ids = tok(batch_captions, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(device)
            out = te(ids, output_hidden_states=True)
            if family == "sdxl":
                hidden.append(out.hidden_states[-2])
                if te is tes[-1]:
                    pooled = out.text_embeds
            else:  # sd-scripts: clip_skip picks hidden_states[-clip_skip], then the final layer norm
                h = out.hidden_states[-clip_skip]
                hidden.append(getattr(te, "text_model", te).final_layer_norm(h) if clip_skip > 1 else out.last_hidden_state)
        return torch.cat(hidden, dim=-1), pooled

    cached_text = {}
    if flat.get("cache_text_encoder_outputs"):
        with torch.no_grad():
            for it in items:
                if it["caption"] not in cached_text:
                    cached_text[it["caption"]] = encode([it["caption"]])

    # kohya repeats: each image appears num_repeats times per epoch; batches hold one bucket size.
    def epoch_batches():
        by_size: dict = {}
        for i, it in enumerate(items):
            by_size.setdefault(it["size"], []).extend([i] * it["repeats"])
        batches = []
        for size in sorted(by_size):
            idx = by_size[size]
            rng.shuffle(idx)
            batches += [idx[b:b + batch_size] for b in range(0, len(idx), batch_size)]
        rng.shuffle(batches)
        return batches

    epochs = int(flat["max_train_epochs"])
    steps_per_epoch = sum((sum(it["repeats"] for it in items if it["size"] == s) + batch_size - 1) // batch_size
                          for s in {it["size"] for it in items})
    total = epochs * steps_per_epoch
    # diffusers' schedules, which sd-scripts uses for these names too
    scheduler = get_scheduler(flat["lr_scheduler"], optimizer, num_warmup_steps=int(flat.get("lr_warmup_steps", 0)),
                              num_training_steps=total)
    every = int(flat.get("save_every_n_epochs") or epochs)
    out_dir = Path(flat["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    state_dir = Path(state_dir) if state_dir else out_dir.parent / "state"
    prompts = []
    if sample_prompts and Path(sample_prompts).exists():
        prompts = [ln.strip() for ln in Path(sample_prompts).read_text(encoding="utf-8").splitlines() if ln.strip()]
    samples_dir = Path(samples_dir) if samples_dir else out_dir.parent / "samples"
    noise_offset = float(flat.get("noise_offset", 0.0))
    min_snr_gamma = float(flat.get("min_snr_gamma", 0.0))
    adapters = [unet] + (tes if train_te else [])
    saved: list[dict] = []
    losses: list[dict] = []
    step = 0
    start_epoch = 0

    resume = _find_state(state_dir, fingerprint, epochs) if flat.get("save_state", True) else None
    if resume is not None:
        st = torch.load(resume / "state.pt", weights_only=False)
        for m, sd in zip(adapters, st["adapters"]):
            set_peft_model_state_dict(m, sd)
        optimizer.load_state_dict(st["optimizer"])
        scheduler.load_state_dict(st["scheduler"])
        torch.set_rng_state(st["torch_rng"])
        rng.setstate(st["py_rng"])
        step, start_epoch, losses, saved = st["step"], st["epoch"], st["losses"], st["saved"]
        print(f"resumed from {resume} (epoch {start_epoch} of {epochs}, step {step}); "
              f"epochs 1..{start_epoch} are not redone", flush=True)

    def save(epoch: int) -> None:
        """The epoch's LoRA (and, with save_state, the state to resume from) go into state/epoch-N/
        first; publish_epochs() copies the LoRAs into output_dir when training is done, so a second run that
        Snakemake lets start on the same outputs finds nothing of this one there to delete."""
        state = {}
        state.update(peft_to_kohya(get_peft_model_state_dict(unet), lambda m: kohya_unet_key(m, family), alpha))
        if train_te:
            for n, te in enumerate(tes, start=1):
                state.update(peft_to_kohya(get_peft_model_state_dict(te), lambda m, n=n: kohya_text_key(m, n, family), alpha))
        state = {k: v.to(save_dtype).cpu().contiguous() for k, v in sorted(state.items())}
        meta = _metadata(flat, dataset, items, step, started, family, device, optimizer_name(optimizer, opt_args), v_pred,
                         base_meta)
        meta["ss_epoch"] = str(epoch)
        meta["sshs_model_hash"] = tensors_hash(state)
        name = checkpoint_name(flat["output_name"], epoch)
        saved.append({"epoch": epoch, "path": str(out_dir / name), "step": step,
                      "modules": sum(1 for k in state if k.endswith(".alpha"))})
        with atomic_dir(state_dir / f"epoch-{epoch:06d}") as tmp:
            save_file(state, str(tmp / name), metadata=meta)
            if flat.get("save_state", True) and fingerprint:
                torch.save({"adapters": [get_peft_model_state_dict(m) for m in adapters],
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "torch_rng": torch.get_rng_state(), "py_rng": rng.getstate(), "step": step,
                            "epoch": epoch, "losses": losses, "saved": saved}, tmp / "state.pt")
            (tmp / "fingerprint.txt").write_text(f"{fingerprint or ''}\n")
        for old in state_dir.glob("epoch-*/state.pt"):  # only the newest state is needed to resume
            if old.parent.name != f"epoch-{epoch:06d}":
                old.unlink()
        if prompts:
            render_samples(epoch)
        if os.environ.get(FAULT_ENV) == str(epoch):
            print(f"{FAULT_ENV}={epoch}: killing the trainer (simulated interruption)", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def render_samples(epoch: int) -> list[Path]:
        import torch as _t

        written = []
        for m in adapters:
            m.eval()
        gen_rng = _t.get_rng_state()
        for i, line in enumerate(prompts):
            prompt, *flags = line.split(" --")
            kv = dict(f.split(" ", 1) for f in flags if " " in f)
            w, h = int(kv.get("w", 512)), int(kv.get("h", 512))
            with _t.no_grad():
                image = pipe(prompt.strip(), num_inference_steps=int(kv.get("s", 20)), width=w, height=h,
                             generator=_t.Generator().manual_seed(int(kv.get("d", seed)))).images[0]
            p = samples_dir / f"{flat['output_name']}-{epoch:06d}-{i:02d}.png"
            with atomic_path(p) as tmp:
                image.save(tmp, format="png")
            written.append(p)
        _t.set_rng_state(gen_rng)
        for m in adapters:
            m.train()
        print(f"epoch {epoch}: {len(written)} sample image(s) in {samples_dir}", flush=True)
        return written

    use_autocast = device.startswith("cuda") and weight_dtype != torch.float32
    base_meta = base_model_metadata(model)  # once: hashing a checkpoint file reads all of it
    trainable = [p for group in params for p in group["params"]]
    bar = tqdm(total=total, initial=step, desc=f"train {flat['output_name']}", unit="step", mininterval=1.0)
    for epoch in range(start_epoch, epochs):
        for idx in epoch_batches():
            mean = torch.stack([latents[i][0] for i in idx]).to(device)
            std = torch.stack([latents[i][1] for i in idx]).to(device)
            lat = ((mean + std * torch.randn_like(std)) * vae.config.scaling_factor).to(weight_dtype)
            caps = [caption_for_step(items[i], rng) for i in idx]
            if cached_text:
                emb = torch.cat([cached_text[c][0] for c in caps])
                pooled = torch.cat([cached_text[c][1] for c in caps]) if family == "sdxl" else None
            else:
                with torch.set_grad_enabled(train_te):
                    emb, pooled = encode(caps)
            noise = torch.randn_like(lat)
            if noise_offset:
                noise = noise + noise_offset * torch.randn((lat.shape[0], lat.shape[1], 1, 1), device=device, dtype=lat.dtype)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), device=device)
            noisy = noise_scheduler.add_noise(lat, noise, t)
            kwargs = {}
            if family == "sdxl":
                ids = [list(items[i]["original"][::-1]) + [0, 0] + list(items[i]["size"][::-1]) for i in idx]
                kwargs["added_cond_kwargs"] = {"text_embeds": pooled.to(weight_dtype),
                                               "time_ids": torch.tensor(ids, device=device, dtype=weight_dtype)}
            with torch.autocast("cuda", dtype=weight_dtype, enabled=use_autocast):
                pred = unet(noisy, t, emb.to(weight_dtype), **kwargs).sample
            target = loss_target(noise_scheduler, lat, noise, t)
            loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
            if min_snr_gamma:  # Min-SNR weighting as sd-scripts applies it: min(snr, γ)/snr, for v min(snr, γ)/(snr+1)
                snr = compute_snr(noise_scheduler, t)
                # min(snr, γ)/snr written as min(γ/snr, 1): 1 (not 0/0) at zero terminal SNR's last step
                weight = torch.clamp(snr, max=min_snr_gamma) / (snr + 1) if v_pred else torch.clamp(min_snr_gamma / snr, max=1.0)
                loss = loss * weight.float()
            loss = loss.mean()
            if scaler is not None:
                scaler.scale(loss).backward()
                if max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                if max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
                optimizer.step()
            lr = optimizer.param_groups[0]["lr"]  # the UNet's learning rate this step
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append({"step": step, "epoch": epoch + 1, "loss": float(loss.detach()), "lr": lr})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", epoch=epoch + 1)
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            save(epoch + 1)
    bar.close()
    publish_epochs(saved, state_dir)

    return {"steps": step, "final_loss": losses[-1]["loss"] if losses else None, "family": family,
            "backend": "builtin", "resumed_from_epoch": start_epoch, "latents_from_cache": cache_hits, "steps_run": step - (resume and st["step"] or 0),
            "seconds": round(time.time() - started, 2), "checkpoints": saved, "losses": losses,
            "samples": sorted(str(p) for p in samples_dir.glob(f"{flat['output_name']}-*.png")) if prompts else []}
