"""v-prediction bases: train.v_parameterization (and zero_terminal_snr) reach the sd-scripts TOML,
the builtin trainer's loss target, and the samplers of generate, evaluate and training samples."""

from __future__ import annotations

import torch

from synthlora.kohya import train_toml, validate_config
from trainer_fixtures import tomls


def test_the_setting_reaches_the_sd_scripts_toml():
    cfg = {"base_model": "noob-vpred.safetensors", "resolution": 1024, "num_repeats": 1, "batch_size": 1,
           "max_train_epochs": 1, "network_dim": 4, "network_alpha": 2.0, "unet_lr": 1e-4}
    doc = train_toml({**cfg, "v_parameterization": True, "zero_terminal_snr": True}, "x", "out")
    flat = {k: v for t in doc.values() for k, v in t.items()}
    assert flat["v_parameterization"] is True and flat["zero_terminal_snr"] is True
    plain = {k: v for t in train_toml(cfg, "x", "out").values() for k, v in t.items()}
    assert "v_parameterization" not in plain and "zero_terminal_snr" not in plain
    validate_config({**cfg, "v_parameterization": True, "zero_terminal_snr": True})  # the builtin trainer takes both


def test_v_prediction_trains_on_the_velocity_not_the_noise(tmp_path, demo_models, monkeypatch):
    """A tiny v-pred training: every step's loss target is alpha_t * noise - sigma_t * x0 under the
    zero-terminal-SNR schedule (whose last step is pure noise), and the LoRA says it is v."""
    from diffusers import DDPMScheduler
    from safetensors import safe_open

    from synthlora.train import train_lora

    train, dataset, epochs = tomls(tmp_path, str(demo_models / "sd15"), "sd15", v_parameterization=True,
                                   zero_terminal_snr=True, min_snr_gamma=5.0)
    noised, targets = [], []
    real_add_noise, real_mse = DDPMScheduler.add_noise, torch.nn.functional.mse_loss

    def add_noise(self, x0, noise, t):
        noised.append((x0.detach().clone(), noise.detach().clone(), t.clone(), self.alphas_cumprod.clone()))
        return real_add_noise(self, x0, noise, t)

    def mse_loss(pred, target, *a, **k):
        targets.append(target.detach().clone())
        return real_mse(pred, target, *a, **k)

    monkeypatch.setattr(DDPMScheduler, "add_noise", add_noise)
    monkeypatch.setattr(torch.nn.functional, "mse_loss", mse_loss)
    summary = train_lora(train, dataset, family="sd15", device="cpu")

    assert summary["steps"] == 4 and len(noised) == len(targets) == 4
    for (x0, noise, t, alphas), target in zip(noised, targets):
        assert alphas[-1] == 0  # zero terminal SNR: the schedule ends in pure noise
        a = alphas[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - alphas[t]).sqrt().view(-1, 1, 1, 1)
        assert torch.allclose(target, a * noise - s * x0, atol=1e-5)
        assert not torch.allclose(target, noise, atol=1e-3)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in summary["losses"])
    with safe_open(summary["checkpoints"][-1]["path"], "pt") as f:
        meta = f.metadata()
    assert meta["modelspec.prediction_type"] == "v" and meta["ss_v_parameterization"] == "True"


def test_generate_and_evaluate_sample_the_base_with_a_v_prediction_scheduler(demo_models):
    from synthlora.backends.base import load_sd_pipeline
    from synthlora.single_file import model_options

    base = str(demo_models / "sd15")
    config = {"train": {"base_model": base, "v_parameterization": True, "zero_terminal_snr": True},
              "single_file": {}}
    pipe = load_sd_pipeline(base, "generate.model", **model_options(config, base))
    cfg = pipe.scheduler.config
    assert (cfg.prediction_type, cfg.rescale_betas_zero_snr, cfg.timestep_spacing) == ("v_prediction", True, "trailing")
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # PNDM cannot rescale its betas
    image = pipe("trg", num_inference_steps=2, width=64, height=64, guidance_scale=1.0,
                 generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (64, 64)
    # Another model than the base keeps its own scheduler: the setting describes the base only.
    other = model_options(config, str(demo_models / "sdxl"))
    assert not other["v_parameterization"] and not other["zero_terminal_snr"]
    assert load_sd_pipeline(base, "generate.model").scheduler.config.prediction_type == "epsilon"



def test_shot_keys_and_evaluation_settings_change_only_for_a_v_prediction_base():
    """Correcting the setting renders anew; epsilon bases keep the keys they always had."""
    from synthlora.single_file import prediction_pixels

    base = "noob-vpred.safetensors"
    eps = {"train": {"base_model": base}}
    v = {"train": {"base_model": base, "v_parameterization": True, "zero_terminal_snr": True}}
    assert prediction_pixels(eps, base) == {} and prediction_pixels(v, "another-model") == {}
    assert prediction_pixels(v, base) == {"prediction": "v_prediction", "zero_terminal_snr": True}
