"""The ``builtin`` trainer: a LoRA with diffusers + peft, driven by the same TOMLs as sd-scripts.

It reads ``dataset.toml`` and ``train.toml``, refuses keys it does not implement (sd-scripts
would silently ignore them), trains, and writes the kohya key format with ``ss_*`` metadata.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path
from typing import Any

from synthlora.kohya import KohyaConfigError, read_toml, validate_dataset, validate_train

# Keys the builtin trainer reads; any other key in train.toml is an error here.
BUILTIN_TRAIN_KEYS = {
    "pretrained_model_name_or_path", "network_module", "network_dim", "network_alpha",
    "network_train_unet_only", "optimizer_type", "learning_rate", "unet_lr", "text_encoder_lr",
    "lr_scheduler", "lr_warmup_steps", "max_train_epochs", "seed", "mixed_precision",
    "gradient_checkpointing", "cache_latents", "output_dir", "output_name", "save_model_as",
    "save_precision", "save_every_n_epochs",
    "sdpa",  # diffusers uses PyTorch SDPA already
}
OPTIMIZERS = {"AdamW", "AdamW8bit"}
SCHEDULERS = {"constant", "constant_with_warmup", "linear", "cosine"}


def load_training_config(train_path: str | Path, dataset_path: str | Path) -> tuple[dict, dict]:
    flat = validate_train(read_toml(train_path), str(train_path))
    unsupported = sorted(set(flat) - BUILTIN_TRAIN_KEYS)
    if unsupported:
        raise KohyaConfigError(f"{train_path}: the builtin trainer does not implement {unsupported}; "
                               "remove them or use train.backend: kohya")
    if flat["optimizer_type"] not in OPTIMIZERS:
        raise KohyaConfigError(f"{train_path}: optimizer_type {flat['optimizer_type']!r} is not one of {sorted(OPTIMIZERS)}")
    if flat["lr_scheduler"] not in SCHEDULERS:
        raise KohyaConfigError(f"{train_path}: lr_scheduler {flat['lr_scheduler']!r} is not one of {sorted(SCHEDULERS)}")
    if flat.get("network_module") != "networks.lora":
        raise KohyaConfigError(f"{train_path}: network_module must be 'networks.lora' for the builtin trainer")
    dataset = validate_dataset(read_toml(dataset_path), str(dataset_path))
    return flat, dataset


def _items(dataset: dict) -> list[tuple[Path, str, int, dict]]:
    ext = dataset.get("general", {}).get("caption_extension", ".caption")
    items = []
    for ds in dataset["datasets"]:
        for sub in ds["subsets"]:
            image_dir = Path(sub["image_dir"])
            for img in sorted(image_dir.glob("*.png")):
                caption = img.with_suffix(ext).read_text(encoding="utf-8").strip()
                items.append((img, caption, int(sub.get("num_repeats", 1)), ds))
    if not items:
        raise KohyaConfigError(f"the dataset has no images ({[s['image_dir'] for d in dataset['datasets'] for s in d['subsets']]})")
    return items


def _metadata(flat: dict, dataset: dict, items: list, steps: int, started: float, family: str,
              device: str) -> dict[str, str]:
    tag_frequency: dict[str, dict[str, int]] = {}
    dirs: dict[str, dict[str, int]] = {}
    for img, caption, repeats, _ in items:
        d = img.parent.name
        dirs.setdefault(d, {"n_repeats": repeats, "img_count": 0})["img_count"] += 1
        freq = tag_frequency.setdefault(d, {})
        for tag in {t.strip() for t in caption.split(",") if t.strip()}:
            freq[tag] = freq.get(tag, 0) + 1
    te_lr = flat.get("text_encoder_lr", [0.0])
    meta = {
        "ss_network_module": flat["network_module"],
        "ss_network_dim": str(flat["network_dim"]),
        "ss_network_alpha": str(flat["network_alpha"]),
        "ss_base_model_version": "sdxl_base_v1-0" if family == "sdxl" else "sd_v1",
        "ss_v2": "False",
        "ss_num_epochs": str(flat["max_train_epochs"]),
        "ss_steps": str(steps),
        "ss_learning_rate": str(flat["learning_rate"]),
        "ss_unet_lr": str(flat.get("unet_lr", flat["learning_rate"])),
        "ss_text_encoder_lr": str(te_lr[0] if te_lr else 0.0),
        "ss_optimizer": flat["optimizer_type"],
        "ss_lr_scheduler": flat["lr_scheduler"],
        "ss_mixed_precision": flat["mixed_precision"] if device != "cpu" else "no",  # what really ran
        "ss_seed": str(flat["seed"]),
        "ss_output_name": flat["output_name"],
        "ss_num_train_images": str(sum(r for _, _, r, _ in items)),
        "ss_tag_frequency": json.dumps(tag_frequency),
        "ss_dataset_dirs": json.dumps(dirs),
        "ss_resolution": str(dataset["datasets"][0]["resolution"]),
        "ss_training_started_at": str(started),
        "ss_training_finished_at": str(time.time()),
        "ss_sd_model_name": str(flat["pretrained_model_name_or_path"]),
        "ss_training_comment": "trained by synthlora builtin trainer (diffusers + peft)",
        "modelspec.architecture": ("stable-diffusion-xl-v1-base/lora" if family == "sdxl" else "stable-diffusion-v1/lora"),
        "modelspec.implementation": "https://github.com/kohya-ss/sd-scripts",
        "modelspec.title": flat["output_name"],
        "modelspec.sai_model_spec": "1.0.0",
    }
    return meta


def _load_images(items, resolution: int):
    import numpy as np
    import torch
    from PIL import Image, ImageOps

    tensors = []
    for img, *_ in items:
        with Image.open(img) as im:
            im = ImageOps.fit(im.convert("RGB"), (resolution, resolution), Image.Resampling.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        tensors.append(torch.from_numpy(arr).permute(2, 0, 1))
    return torch.stack(tensors)


def train_lora(train_toml: str | Path, dataset_toml: str | Path, family: str = "sdxl",
               device: str = "auto") -> dict[str, Any]:
    """Train, saving ``{output_dir}/{output_name}-{epoch:06d}.safetensors`` every
    ``save_every_n_epochs`` and after the last epoch; return a summary (steps, losses, files)."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from synthlora.backends.base import resolve_device
    from synthlora.io import atomic_path
    from synthlora.kohya import checkpoint_name
    from synthlora.lora_format import TEXT_TARGETS, UNET_TARGETS, kohya_text_key, kohya_unet_key, peft_to_kohya

    if family != "sdxl":
        raise KohyaConfigError(f"the builtin trainer supports family 'sdxl' (got {family!r})")
    flat, dataset = load_training_config(train_toml, dataset_toml)
    started = time.time()
    device = resolve_device(device)
    seed = int(flat["seed"])
    torch.manual_seed(seed)
    rng = random.Random(seed)
    weight_dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[flat["mixed_precision"]]
    if device == "cpu":
        weight_dtype = torch.float32  # half precision on CPU is slow and unstable

    pipe = StableDiffusionXLPipeline.from_pretrained(flat["pretrained_model_name_or_path"], dtype=weight_dtype)
    unet, vae, te1, te2 = pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2
    for m in (unet, vae, te1, te2):
        m.requires_grad_(False)
        m.to(device)
    vae.to(torch.float32)  # the SDXL VAE overflows in fp16
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    train_te = not flat.get("network_train_unet_only", True)
    dim, alpha = int(flat["network_dim"]), float(flat["network_alpha"])
    unet.add_adapter(LoraConfig(r=dim, lora_alpha=alpha, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    params = [{"params": [p for p in unet.parameters() if p.requires_grad], "lr": float(flat.get("unet_lr", flat["learning_rate"]))}]
    if train_te:
        te_lrs = flat.get("text_encoder_lr") or [flat["learning_rate"]] * 2
        for te, lr in ((te1, te_lrs[0]), (te2, te_lrs[-1])):
            te.add_adapter(LoraConfig(r=dim, lora_alpha=alpha, target_modules=TEXT_TARGETS, init_lora_weights="gaussian"))
            params.append({"params": [p for p in te.parameters() if p.requires_grad], "lr": float(lr)})
    for group in params:
        for p in group["params"]:
            p.data = p.data.float()  # LoRA weights train in fp32 under mixed precision
    if flat.get("gradient_checkpointing"):
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(params)

    items = _items(dataset)
    resolution = int(dataset["datasets"][0]["resolution"])
    batch_size = int(dataset["datasets"][0].get("batch_size", 1))
    pixels = _load_images(items, resolution)
    with torch.no_grad():
        latents = torch.cat([
            vae.encode(pixels[i:i + 8].to(device)).latent_dist.sample() * vae.config.scaling_factor
            for i in range(0, len(pixels), 8)
        ]).to(weight_dtype)
    captions = [c for _, c, _, _ in items]
    tokenizers = (pipe.tokenizer, pipe.tokenizer_2)

    def encode(batch_captions):
        hidden, pooled = [], None
        for tok, te in zip(tokenizers, (te1, te2)):
            ids = tok(batch_captions, padding="max_length", max_length=tok.model_max_length,
                      truncation=True, return_tensors="pt").input_ids.to(device)
            out = te(ids, output_hidden_states=True)
            hidden.append(out.hidden_states[-2])
            if te is te2:
                pooled = out.text_embeds
        return torch.cat(hidden, dim=-1), pooled

    # kohya repeats: each image appears num_repeats times per epoch.
    order = [i for i, (_, _, r, _) in enumerate(items) for _ in range(r)]
    epochs = int(flat["max_train_epochs"])
    steps_per_epoch = (len(order) + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    warmup = int(flat.get("lr_warmup_steps", 0))
    kind = flat["lr_scheduler"]

    def lr_factor(step):
        if kind in ("constant_with_warmup", "linear", "cosine") and step < warmup:
            return (step + 1) / max(1, warmup)
        if kind == "linear":
            return max(0.0, (total - step) / max(1, total - warmup))
        if kind == "cosine":
            import math
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
        return 1.0

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device, dtype=weight_dtype)
    every = int(flat.get("save_every_n_epochs") or epochs)
    out_dir = Path(flat["output_dir"])
    saved = []

    def save(epoch: int) -> None:
        state = peft_to_kohya(get_peft_model_state_dict(unet), lambda m: kohya_unet_key(m, family), alpha)
        if train_te:
            for n, te in ((1, te1), (2, te2)):
                state.update(peft_to_kohya(get_peft_model_state_dict(te), lambda m, n=n: kohya_text_key(m, n, family), alpha))
        state = {k: v.to(torch.float32).cpu().contiguous() for k, v in sorted(state.items())}
        meta = _metadata(flat, dataset, items, step, started, family, device)
        meta["ss_epoch"] = str(epoch)
        sha = hashlib.sha256()
        for k in sorted(state):
            sha.update(state[k].numpy().tobytes())
        meta["sshs_model_hash"] = sha.hexdigest()
        path = out_dir / checkpoint_name(flat["output_name"], epoch)
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        saved.append({"epoch": epoch, "path": str(path), "step": step, "modules": len(state) // 3})

    losses = []
    step = 0
    bar = tqdm(total=total, desc=f"train {flat['output_name']}", unit="step", mininterval=1.0)
    for epoch in range(epochs):
        rng.shuffle(order)
        for b in range(steps_per_epoch):
            idx = order[b * batch_size:(b + 1) * batch_size]
            lat = latents[idx]
            with torch.set_grad_enabled(train_te):
                emb, pooled = encode([captions[i] for i in idx])
            noise = torch.randn_like(lat)
            t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), device=device)
            noisy = noise_scheduler.add_noise(lat, noise, t)
            pred = unet(noisy, t, emb.to(weight_dtype),
                        added_cond_kwargs={"text_embeds": pooled.to(weight_dtype),
                                           "time_ids": time_ids.repeat(len(idx), 1)}).sample
            target = noise if noise_scheduler.config.prediction_type == "epsilon" else noise_scheduler.get_velocity(lat, noise, t)
            loss = F.mse_loss(pred.float(), target.float())
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append({"step": step, "epoch": epoch + 1, "loss": float(loss)})
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.4f}", epoch=epoch + 1)
        if (epoch + 1) % every == 0 or epoch + 1 == epochs:
            save(epoch + 1)
    bar.close()

    return {"steps": step, "final_loss": losses[-1]["loss"] if losses else None,
            "seconds": round(time.time() - started, 2), "checkpoints": saved, "losses": losses}
