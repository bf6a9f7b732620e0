"""An interrupted train job resumes from its newest saved state: finished epochs are not redone,
and the result is the very LoRA an uninterrupted run makes."""

from __future__ import annotations

import json
import shutil

from safetensors.torch import load_file

from synthlora.train import FAULT_ENV
from training_paths import training


def test_train_killed_after_epoch_1_resumes_at_epoch_2(project, finished):
    folder = training(project)  # results/mira/train/<fingerprint>/, the same as the finished run's
    shutil.rmtree(folder)  # train from scratch
    killed = project.snakemake(check=False, env={FAULT_ENV: "1"})
    assert killed.returncode != 0, killed.output[-3000:]
    state = folder / "state" / "epoch-000001"
    assert (state / "state.pt").is_file() and (state / "mira-000001.safetensors").is_file()
    assert not (folder / "epochs" / "mira-000002.safetensors").exists()

    run = project.snakemake()  # plain snakemake: the interrupted training is the one to finish
    assert project.jobs(run)["train"] == 1
    log = project.path(f"logs/mira/train/{folder.name}.log").read_text()
    assert "resumed from" in log and "epochs 1..1 are not redone" in log
    summary = json.loads((folder / "summary.json").read_text())
    reference = json.loads((training(finished) / "summary.json").read_text())
    per_epoch = reference["steps"] // 2
    assert summary["resumed_from_epoch"] == 1 and summary["steps_run"] == per_epoch
    assert summary["losses"] == reference["losses"]  # epoch 1 from the state, epoch 2 trained the same
    for epoch in (1, 2):
        name = f"epochs/mira-00000{epoch}.safetensors"
        got, want = load_file(folder / name), load_file(training(finished) / name)
        assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in got), name
    assert (folder / "loss_curve.png").stat().st_size > 1000
    assert "Nothing to be done" in project.snakemake("-n").output
