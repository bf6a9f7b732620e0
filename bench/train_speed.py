"""Builtin trainer vs a plain diffusers + peft reference loop: steps/s and peak memory.

An SDXL LoRA with the same settings on both sides (resolution, batch 1, gradient checkpointing,
rank, AdamW, mixed precision on GPU), run one after the other in one process and printed side
by side with their ratio. On a GPU with a real SDXL:

    python bench/train_speed.py --model stabilityai/stable-diffusion-xl-base-1.0 --resolution 1024 --steps 30

On a CPU with the tiny demo model (meaningless absolute numbers, the ratio still shows
overhead): python bench/train_speed.py  (builds the demo SDXL into a temp dir if needed)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def peak_memory(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process-wide, MiB


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def make_dataset(root: Path, n: int, res: int, reps: int) -> Path:
    import numpy as np
    from PIL import Image

    d = root / "dataset" / f"{reps}_trg"
    d.mkdir(parents=True, exist_ok=True)
    rs = np.random.RandomState(0)
    for i in range(n):
        Image.fromarray(rs.randint(0, 255, (res, res, 3), dtype=np.uint8)).save(d / f"{i}.png")
        (d / f"{i}.txt").write_text("trg, solo")
    return root / "dataset"


def run_builtin(args, root: Path) -> dict:
    from synthlora.kohya import dataset_toml, train_toml, write_toml
    from synthlora.train import train_lora

    cfg = {"base_model": args.model, "family": "sdxl", "resolution": args.resolution, "num_repeats": args.steps,
           "batch_size": 1, "max_train_epochs": 1, "network_dim": args.rank, "network_alpha": float(args.rank),
           "unet_lr": 1e-4, "gradient_checkpointing": True, "mixed_precision": args.precision, "save_state": False}
    write_toml(root / "train.toml", train_toml(cfg, "bench", str(root / "out")))
    write_toml(root / "dataset.toml", dataset_toml(cfg, str(root / "dataset"), "trg"))
    reset_peak(args.device)
    s = train_lora(root / "train.toml", root / "dataset.toml", "sdxl", args.device, latent_cache_dir=root / "cache")
    # steps/s over the training loop only: the summary's seconds include loading; time the loop
    return {"steps": s["steps"], "seconds": s["seconds"], "peak_mib": peak_memory(args.device)}


def run_reference(args, root: Path) -> dict:
    """The plain loop from diffusers' train_text_to_image_lora_sdxl example, trimmed."""
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler, StableDiffusionXLPipeline
    from peft import LoraConfig
    from PIL import Image
    import numpy as np

    from synthlora.lora_format import UNET_TARGETS

    started = time.time()
    dtype = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    if args.device == "cpu":
        dtype = torch.float32
    reset_peak(args.device)
    pipe = StableDiffusionXLPipeline.from_pretrained(args.model, dtype=dtype)
    unet, vae = pipe.unet.to(args.device), pipe.vae.to(args.device, torch.float32)
    te1, te2 = pipe.text_encoder.to(args.device), pipe.text_encoder_2.to(args.device)
    for m in (unet, vae, te1, te2):
        m.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=args.rank, lora_alpha=args.rank, target_modules=UNET_TARGETS, init_lora_weights="gaussian"))
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    img = Image.open(next((root / "dataset").glob("*_trg/*.png"))).convert("RGB")
    px = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None].to(args.device)
    with torch.no_grad():
        lat = (vae.encode(px).latent_dist.sample() * vae.config.scaling_factor).to(dtype)
        ids = pipe.tokenizer(["trg, solo"], padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids.to(args.device)
        o1, o2 = te1(ids, output_hidden_states=True), te2(ids, output_hidden_states=True)
        emb = torch.cat([o1.hidden_states[-2], o2.hidden_states[-2]], -1).to(dtype)
        pooled = o2.text_embeds.to(dtype)
    r = args.resolution
    time_ids = torch.tensor([[r, r, 0, 0, r, r]], device=args.device, dtype=dtype)
    for _ in range(args.steps):
        noise = torch.randn_like(lat)
        t = torch.randint(0, 1000, (1,), device=args.device)
        with torch.autocast("cuda", dtype=dtype, enabled=args.device.startswith("cuda") and dtype != torch.float32):
            pred = unet(sched.add_noise(lat, noise, t), t, emb,
                        added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        F.mse_loss(pred.float(), noise.float()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return {"steps": args.steps, "seconds": round(time.time() - started, 2), "peak_mib": peak_memory(args.device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="SDXL diffusers folder or hub id (default: tiny demo SDXL)")
    ap.add_argument("--resolution", type=int, default=None, help="default 1024 on GPU, 64 on CPU")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--precision", default="bf16", choices=["no", "fp16", "bf16"])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torch

    from synthlora.backends.base import resolve_device

    args.device = resolve_device(args.device)
    if args.device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tmp = Path(tempfile.mkdtemp(prefix="train-speed-"))
    if args.model is None:
        from synthlora.demo_models import build_sdxl

        build_sdxl(tmp / "sdxl")
        args.model = str(tmp / "sdxl")
    args.resolution = args.resolution or (1024 if args.device != "cpu" else 64)
    make_dataset(tmp, 1, args.resolution, args.steps)
    # load time is included on both sides (the same from_pretrained), so the ratio is fair
    ref = run_reference(args, tmp)
    builtin = run_builtin(args, tmp)
    for r in (ref, builtin):
        r["steps_per_s"] = round(r["steps"] / r["seconds"], 3)
    print(json.dumps({"device": args.device, "model": args.model, "resolution": args.resolution,
                      "reference": ref, "builtin": builtin}, indent=1))
    print(f"{'':10}{'steps/s':>10}{'peak MiB':>10}")
    print(f"{'reference':10}{ref['steps_per_s']:>10}{ref['peak_mib']:>10.0f}")
    print(f"{'builtin':10}{builtin['steps_per_s']:>10}{builtin['peak_mib']:>10.0f}")
    print(f"ratio builtin/reference: {builtin['steps_per_s'] / ref['steps_per_s']:.2f}x steps/s, "
          f"{builtin['peak_mib'] / max(ref['peak_mib'], 1e-9):.2f}x peak memory"
          + (" (CPU peak is the process maximum RSS: cumulative)" if args.device == "cpu" else ""))


if __name__ == "__main__":
    main()
