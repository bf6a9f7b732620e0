"""An interrupted train job resumes from its newest saved state: finished epochs are not redone,
and the result is the very LoRA an uninterrupted run makes."""

from __future__ import annotations

import json
import shutil

from safetensors.torch import load_file

from synthlora.train import FAULT_ENV

# Naming the select checkpoint's output as a target: with only `all`, Snakemake 9.27 leaves the
# train job's input <TBD> when train must rerun while everything upstream is current (reported).
TARGETS = ("results/mira/selection.tsv", "results/mira/lora/mira.safetensors")


def test_train_killed_after_epoch_1_resumes_at_epoch_2(project, finished):
    lora = project.path("results/mira/lora")
    for name in ("state", "epochs", "train_summary.json", "loss_curve.png", "mira.safetensors"):  # from scratch
        shutil.rmtree(lora / name) if (lora / name).is_dir() else (lora / name).unlink()
    killed = project.snakemake(*TARGETS, check=False, env={FAULT_ENV: "1"})
    assert killed.returncode != 0, killed.output[-3000:]
    state = project.path("results/mira/lora/state/epoch-000001")
    assert (state / "state.pt").is_file() and (state / "mira-000001.safetensors").is_file()
    assert not project.path("results/mira/lora/epochs/mira-000002.safetensors").exists()

    run = project.snakemake(*TARGETS)
    assert project.jobs(run)["train"] == 1
    log = project.path("logs/mira/train.log").read_text()
    assert "resumed from" in log and "epochs 1..1 are not redone" in log
    summary = json.loads(project.path("results/mira/lora/train_summary.json").read_text())
    reference = json.loads(finished.path("results/mira/lora/train_summary.json").read_text())
    per_epoch = reference["steps"] // 2
    assert summary["resumed_from_epoch"] == 1 and summary["steps_run"] == per_epoch
    assert summary["losses"] == reference["losses"]  # epoch 1 from the state, epoch 2 trained the same
    for epoch in (1, 2):
        name = f"results/mira/lora/epochs/mira-00000{epoch}.safetensors"
        got, want = load_file(project.path(name)), load_file(finished.path(name))
        assert got.keys() == want.keys() and all((got[k] == want[k]).all() for k in got), name
    assert project.path("results/mira/lora/loss_curve.png").stat().st_size > 1000
