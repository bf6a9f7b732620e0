"""The kohya backend, without sd-scripts (not installable here): a clear error when it is
missing, and a stand-in script with sd-scripts' arguments and output files (tests/fake_sd_scripts)
for the launch, the streamed log, the checkpoint contract, rejection and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from synthlora.kohya import KohyaConfigError, dataset_toml, train_toml, write_toml
from conftest import TEST_CONFIG
from training_paths import training

FAKE = Path(__file__).resolve().parent / "fake_sd_scripts"
CFG = {"base_model": "m", "resolution": 64, "num_repeats": 1, "batch_size": 1, "max_train_epochs": 3,
       "save_every_n_epochs": 1, "network_dim": 4, "network_alpha": 2.0, "unet_lr": 1e-4, "backend": "kohya"}
KOHYA = {"sd_scripts": str(FAKE), "python": "python", "accelerate_args": ["--num_cpu_threads_per_process", "1"]}


def _tomls(tmp_path, **over):
    cfg = {**CFG, **over}
    (tmp_path / "dataset" / "1_trg").mkdir(parents=True)
    write_toml(tmp_path / "train.toml", train_toml(cfg, "x", str(tmp_path / "lora" / "epochs")))
    write_toml(tmp_path / "dataset.toml", dataset_toml(cfg, str(tmp_path / "dataset"), "trg"))
    return tmp_path / "train.toml", tmp_path / "dataset.toml"


def test_missing_sd_scripts_is_a_clear_error_naming_the_key(tmp_path):
    from synthlora.kohya_run import run_kohya

    tr, ds = _tomls(tmp_path)
    with pytest.raises(KohyaConfigError, match=r"train\.kohya\.sd_scripts.*git clone"):
        run_kohya(tr, ds, "sdxl", {**KOHYA, "sd_scripts": str(tmp_path / "nowhere")}, "fp")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KohyaConfigError, match="no train_network.py"):
        run_kohya(tr, ds, "sd15", {**KOHYA, "sd_scripts": str(tmp_path / "empty")}, "fp")
    assert not (tmp_path / "lora" / "epochs" / "x-000001.safetensors").exists()


def test_rejected_config_fails_with_sd_scripts_own_message(tmp_path, monkeypatch):
    from synthlora.kohya_run import run_kohya

    tr, ds = _tomls(tmp_path)
    monkeypatch.setenv("FAKE_SD_REJECT", "1")
    with pytest.raises(RuntimeError, match=r"(?s)failed \(exit 1\).*extra keys not allowed"):
        run_kohya(tr, ds, "sdxl", KOHYA, "fp")


def test_interrupted_kohya_run_resumes_from_the_saved_state(tmp_path, monkeypatch, capsys):
    from synthlora.kohya_run import run_kohya

    tr, ds = _tomls(tmp_path)
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_SD_ARGV", str(argv))
    monkeypatch.setenv("FAKE_SD_FAIL_AFTER_EPOCH", "2")
    with pytest.raises(RuntimeError, match="(?s)failed.*Killed"):
        run_kohya(tr, ds, "sdxl", KOHYA, "fp-1")
    epochs = tmp_path / "lora" / "epochs"
    for f in epochs.glob("x-00000?.safetensors"):  # Snakemake deletes a failed job's outputs
        f.unlink()
    monkeypatch.delenv("FAKE_SD_FAIL_AFTER_EPOCH")
    summary = run_kohya(tr, ds, "sdxl", KOHYA, "fp-1")
    launched = json.loads(argv.read_text())
    assert launched["argv"][-2:] == ["--resume", str(epochs / "x-000002-state")]
    assert summary["resumed_from_epoch"] == 2
    out = capsys.readouterr().out
    assert "epoch 3/3" in out and "epoch 1/3" not in out.split("resume from")[-1], "epochs 1-2 redone"
    # the contract: every saved epoch, the final file renamed to sd-scripts' epoch naming
    assert [c["epoch"] for c in summary["checkpoints"]] == [1, 2, 3]
    assert all(Path(c["path"]).is_file() for c in summary["checkpoints"])
    assert not (epochs / "x.safetensors").exists()
    assert summary["checkpoints"][-1]["step"] == 6 and summary["final_loss"] == pytest.approx(0.5 / 3, abs=1e-3)
    # another training (other fingerprint) does not resume from this one's state
    run_kohya(tr, ds, "sdxl", KOHYA, "fp-2")
    assert "--resume" not in json.loads(argv.read_text())["argv"]


def test_workflow_trains_with_kohya_backend_sd15(project, tmp_path):
    """The train rule on the kohya backend: the stand-in gets the generated TOMLs (SD1.5 script,
    clip_skip), its progress lands in the job log, and the checkpoint contract holds."""
    cfg = tmp_path / "kohya.yaml"
    cfg.write_text(json.dumps({"train": {"backend": "kohya", "family": "sd15", "clip_skip": 2,
                                         "base_model": "resources/demo-models/sd15", "kohya": KOHYA}}))
    argv = tmp_path / "argv.json"
    files = (*TEST_CONFIG, str(cfg))
    # Training outputs only: the stand-in's LoRA is a placeholder that evaluation cannot render with.
    folder = training(project, files)
    target = str((folder / "summary.json").relative_to(project.root))
    run = project.snakemake(target, configfiles=files, env={"FAKE_SD_ARGV": str(argv)})
    assert project.jobs(run)["train"] == 1, run.output[-3000:]
    launched = json.loads(argv.read_text())
    assert Path(launched["argv"][0]).name == "train_network.py"
    assert launched["flat"]["clip_skip"] == 2 and launched["flat"]["network_alpha"] == 2.0
    log = project.path(f"logs/mira/train/{folder.name}.log").read_text()
    assert "avr_loss=" in log and "accelerate.commands.launch" in log
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["backend"] == "kohya" and [c["epoch"] for c in summary["checkpoints"]] == [1, 2]
    assert all(project.path(c["path"]).is_file() for c in summary["checkpoints"])
    assert (folder / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
