"""A tiny dataset and the TOMLs for one builtin training on a demo model (test_vpred, test_trainer_parity)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from synthlora.kohya import dataset_toml, train_toml, write_toml

BASE = {"resolution": 64, "num_repeats": 2, "batch_size": 1, "max_train_epochs": 1, "save_every_n_epochs": 1,
        "network_dim": 4, "network_alpha": 2.0, "unet_lr": 1e-3, "backend": "builtin", "save_state": False,
        "cache_latents": False}


def tomls(tmp_path: Path, base_model: str, family: str, **over) -> tuple[Path, Path, Path]:
    """Two random 64 px images with captions, and train.toml / dataset.toml for them; returns the
    two TOMLs and the epochs folder."""
    cfg = {**BASE, "base_model": base_model, "family": family, **over}
    images = tmp_path / "dataset" / "2_trg"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(images / f"{i}.png")
        (images / f"{i}.txt").write_text("trg, a character, standing")
    epochs = tmp_path / "epochs"
    write_toml(tmp_path / "train.toml", train_toml(cfg, "x", str(epochs)))
    write_toml(tmp_path / "dataset.toml", dataset_toml(cfg, str(tmp_path / "dataset"), "trg"))
    return tmp_path / "train.toml", tmp_path / "dataset.toml", epochs
