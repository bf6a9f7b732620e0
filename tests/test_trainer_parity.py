"""The builtin trainer and sd-scripts read the same TOML the same way: gradient clipping at
max_grad_norm (sd-scripts' default 1.0), diffusers' learning-rate schedules, and the LoRA's
metadata written as sd-scripts writes it."""

from __future__ import annotations

import datetime

import pytest
import torch

from synthlora.kohya import KohyaConfigError, train_toml, validate_config
from trainer_fixtures import tomls

CFG = {"base_model": "m", "resolution": 64, "num_repeats": 1, "batch_size": 1, "max_train_epochs": 1,
       "network_dim": 4, "network_alpha": 2.0, "unet_lr": 1e-4}


def test_max_grad_norm_is_written_for_both_trainers_and_checked():
    flat = {k: v for t in train_toml(CFG, "x", "out").values() for k, v in t.items()}
    assert flat["max_grad_norm"] == 1.0  # sd-scripts' default, written so both trainers read the same value
    validate_config({**CFG, "max_grad_norm": 0.0})  # 0 turns clipping off; the builtin trainer takes it
    with pytest.raises(KohyaConfigError, match="max_grad_norm must be >= 0"):
        validate_config({**CFG, "max_grad_norm": -1.0})


def test_builtin_trainer_clips_schedules_and_writes_sd_scripts_metadata(tmp_path, demo_models, monkeypatch):
    from diffusers.optimization import get_scheduler
    from safetensors import safe_open

    from synthlora.train import train_lora

    lr = 1e-3
    train, dataset, _ = tomls(tmp_path, str(demo_models / "sdxl"), "sdxl", max_train_epochs=2, unet_lr=lr,
                              lr_scheduler="cosine", lr_warmup_steps=2, max_grad_norm=0.01,
                              optimizer_args=["weight_decay=0.01"], min_snr_gamma=5.0)
    clipped = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def clip(params, max_norm, *a, **k):
        params = list(params)
        before = real_clip(params, max_norm, *a, **k)
        after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        clipped.append((len(params), float(max_norm), float(before), float(after)))
        return before

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
    summary = train_lora(train, dataset, family="sdxl", device="cpu")

    steps = summary["steps"]
    assert steps == 8 and len(clipped) == steps  # 2 images x 2 repeats x 2 epochs
    for n, max_norm, before, after in clipped:
        assert n > 0 and max_norm == 0.01
        assert after <= max_norm * 1.001 < before  # this tiny model's gradients exceed 0.01: they were clipped
    # The schedule is diffusers' (what sd-scripts uses for 'cosine'), warm-up included.
    reference = get_scheduler("cosine", torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr),
                              num_warmup_steps=2, num_training_steps=steps)
    expected = []
    for _ in range(steps):
        expected.append(reference.get_last_lr()[0])
        reference.optimizer.step()
        reference.step()
    assert [r["lr"] for r in summary["losses"]] == pytest.approx(expected)
    assert expected[0] == 0.0 and max(expected) == pytest.approx(lr)

    with safe_open(summary["checkpoints"][-1]["path"], "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.sai_model_spec"] == "1.0.1"
    assert meta["modelspec.prediction_type"] == "epsilon"
    datetime.datetime.fromisoformat(meta["modelspec.date"])
    assert meta["ss_optimizer"] == "torch.optim.adamw.AdamW(weight_decay=0.01)"
    assert meta["ss_text_encoder_lr"] == "None"  # the text encoders were not trained
    assert meta["ss_max_grad_norm"] == "0.01"
    assert meta["ss_sd_model_name"] == "sdxl" and "ss_sd_model_hash" not in meta  # a local folder: its name


def test_no_clipping_at_zero(tmp_path, demo_models, monkeypatch):
    from synthlora.train import train_lora

    train, dataset, _ = tomls(tmp_path, str(demo_models / "sd15"), "sd15", max_grad_norm=0.0)
    calls = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: calls.append(a))
    train_lora(train, dataset, family="sd15", device="cpu")
    assert calls == []
