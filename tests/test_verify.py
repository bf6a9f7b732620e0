"""Nothing built is silently wrong: damaged LoRAs, images and TOMLs are recognised (synthlora.verify),
set aside and built again by a plain `snakemake`, and never delivered; two live runs never train the
same LoRA (synthlora.locks); `synthlora clean` lists what no current input names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import save_file

from synthlora.cli import main as cli
from synthlora.locks import TrainingLocked, holder, training_lock
from synthlora.verify import file_problem, png_problem, safetensors_problem, verified_lora

from conftest import TEST_CONFIG
from training_paths import evaluation, training


def _lora(path, meta=None):
    save_file({"lora_unet_x.lora_down.weight": np.ones((4, 8), np.float32),
               "lora_unet_x.alpha": np.array(2.0, np.float32)}, str(path), metadata=meta)


def test_truncated_or_edited_safetensors_are_recognised(tmp_path):
    good = tmp_path / "good.safetensors"
    _lora(good)
    assert safetensors_problem(good) is None
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-10])
    assert "truncated" in safetensors_problem(cut)
    (tmp_path / "tiny.safetensors").write_bytes(b"\x01\x02")
    assert "not a readable safetensors file" in safetensors_problem(tmp_path / "tiny.safetensors")
    # damaged in place: same size, other bytes; only the full check against the metadata's hash sees it
    from synthlora.verify import lora_data_hash

    hashed = tmp_path / "hashed.safetensors"
    _lora(hashed)
    _lora(hashed, {"sshs_model_hash": lora_data_hash(hashed)})
    assert verified_lora(hashed)["tensors"] == 2 and verified_lora(hashed)["modules"] == 1
    data = bytearray(hashed.read_bytes())
    data[-1] ^= 0xFF
    hashed.write_bytes(bytes(data))
    assert safetensors_problem(hashed) is None and "sshs_model_hash" in safetensors_problem(hashed, full=True)
    with pytest.raises(ValueError, match="hashed.safetensors"):
        verified_lora(hashed)


def test_truncated_png_and_toml_are_recognised_but_a_failed_shot_marker_is_not(tmp_path):
    from PIL import Image

    png = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(png)
    assert png_problem(png) is None
    png.write_bytes(png.read_bytes()[:-5])
    assert "truncated" in file_problem(png)
    marker = tmp_path / "b.png"
    marker.write_bytes(b"generation failed")
    (tmp_path / "b.json").write_text(json.dumps({"status": "failed"}))
    assert file_problem(marker) is None
    toml = tmp_path / "train.toml"
    toml.write_text("[model\nx = 1\n")
    assert "not valid TOML" in file_problem(toml)


def test_trainer_refuses_a_dataset_of_other_images_or_a_damaged_image_naming_it(tmp_path):
    from PIL import Image

    from synthlora.kohya import KohyaConfigError
    from synthlora.train import check_dataset

    sub = tmp_path / "dataset" / "1_trg"
    sub.mkdir(parents=True)
    for key in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"):
        Image.new("RGB", (8, 8)).save(sub / f"{key}.png")
        (sub / f"{key}.txt").write_text("trg, tag")
    check_dataset(tmp_path / "dataset", ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"])
    with pytest.raises(KohyaConfigError, match=r"1 missing: \['cccccccccccccccc'\].*1 not selected"):
        check_dataset(tmp_path / "dataset", ["aaaaaaaaaaaaaaaa", "cccccccccccccccc"])
    damaged = sub / "bbbbbbbbbbbbbbbb.png"
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(KohyaConfigError, match=r"dataset image .*bbbbbbbbbbbbbbbb\.png cannot be decoded"):
        check_dataset(tmp_path / "dataset", ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"])


def test_a_held_training_lock_names_its_holder_and_dies_with_it(tmp_path):
    lock = tmp_path / "train" / "train.lock"
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from synthlora.locks import training_lock\n"
            "with training_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n")
    other = subprocess.Popen([sys.executable, "-c", code, str(lock), os.path.join(os.path.dirname(__file__), "..", "src")],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        assert f"pid {other.pid}" in holder(lock)
        with pytest.raises(TrainingLocked, match=rf"(?s)being trained right now.*pid {other.pid}.*--unlock"):
            with training_lock(lock):
                pass
    finally:
        other.kill()  # as a crash would: the kernel releases the lock
        other.wait()
    assert holder(lock) is None
    with training_lock(lock):
        assert f"pid {os.getpid()}" in holder(lock)


@pytest.mark.workflow
def test_damaged_delivered_and_epoch_loras_are_rebuilt_and_never_delivered(project):
    """A truncated delivered LoRA and a truncated epoch file: one plain run sets both aside (the dry
    run first says so), restores the epoch from the training's own copy without training again, and
    delivers a file that passes the full check; the model card says what it verified."""
    folder = training(project)
    delivered = project.path("results/mira/lora/mira.safetensors")
    good = delivered.read_bytes()
    delivered.write_bytes(good[: len(good) // 2])
    epoch = folder / "epochs" / "mira-000002.safetensors"
    epoch.write_bytes(epoch.read_bytes()[:100])
    dry = project.snakemake("-n")
    assert "mira.safetensors is damaged" in dry.output and "mira-000002.safetensors is damaged" in dry.output
    assert delivered.stat().st_size < len(good), "a dry run changes nothing"
    run = project.snakemake()
    jobs = project.jobs(run)
    assert jobs["train"] == 1 and jobs["deliver_lora"] == 1 and jobs["model_card"] == 1, jobs
    log = project.path(f"logs/mira/train/{folder.name}.log").read_text()
    assert "epochs 1..2 are not redone" in log  # restored from state/, not trained again
    assert delivered.read_bytes() == good and verified_lora(delivered)["hash_in_metadata"]
    assert (delivered.parent / "mira.safetensors.damaged").is_file()
    card = project.path("results/mira/MODEL_CARD.md").read_text()
    assert "matches the sshs_model_hash in its metadata" in card
    assert "Nothing to be done" in project.snakemake("-n").output


@pytest.mark.workflow
def test_deleted_epoch_named_by_best_json_is_made_again(project):
    best = json.loads((evaluation(project) / "best.json").read_text())["epoch"]
    (training(project) / "epochs" / f"mira-{best:06d}.safetensors").unlink()
    run = project.snakemake()
    assert project.jobs(run)["train"] == 1
    assert (training(project) / "epochs" / f"mira-{best:06d}.safetensors").is_file()
    assert "Nothing to be done" in project.snakemake("-n").output


@pytest.mark.workflow
def test_a_second_live_run_cannot_train_the_same_lora(project):
    """Run A holds the training folder's lock (as its train job does); run B (after --unlock) must
    fail its train job at once, naming A, and leave A's state alone."""
    folder = training(project)
    (folder / "epochs" / "mira-000001.safetensors").unlink()  # B must train
    state_before = sorted(p.name for p in (folder / "state").rglob("*"))
    code = ("import sys, time; sys.path.insert(0, sys.argv[2]); from synthlora.locks import training_lock\n"
            "with training_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(300)\n")
    a = subprocess.Popen([sys.executable, "-c", code, str(folder / "train.lock"), os.path.join(os.path.dirname(__file__), "..", "src")],
                         stdout=subprocess.PIPE, text=True)
    try:
        assert a.stdout.readline().strip() == "held"
        started = time.time()
        b = project.snakemake(check=False)
        assert b.returncode != 0 and project.jobs(b)["train"] == 1
        log = project.path(f"logs/mira/train/{folder.name}.log").read_text()
        assert "being trained right now by another run" in log and f"pid {a.pid}" in log, log[-2000:]
        assert sorted(p.name for p in (folder / "state").rglob("*")) == state_before
        assert time.time() - started < 120
    finally:
        a.kill()
        a.wait()
    run = project.snakemake()  # A gone: B's rerun finishes from the state
    assert project.jobs(run)["train"] == 1


@pytest.mark.workflow
def test_clean_lists_old_trainings_and_unplanned_images_and_deletes_only_with_yes(project):
    old = training(project)
    plain = ["clean", "--root", str(project.root), *[a for f in TEST_CONFIG for a in ("--configfile", f)]]
    res = CliRunner().invoke(cli, plain)  # the command and the workflow agree on what is current
    assert res.exit_code == 0 and old.name not in res.output, res.output
    stray = project.path("results/mira/images/0123456789abcdef.png")
    shutil.copyfile(next(project.root.glob("results/mira/images/*.png")), stray)
    project.path("config/dim.yaml").write_text("train:\n  network_dim: 8\n  network_alpha: 4.0\n")
    files = (*TEST_CONFIG, "config/dim.yaml")
    args = ["clean", "--root", str(project.root), *[a for f in files for a in ("--configfile", f)]]
    listed = CliRunner().invoke(cli, args)
    assert listed.exit_code == 0, listed.output
    assert "nothing deleted" in listed.output and "0123456789abcdef.png" in listed.output
    assert stray.exists()
    # before the new training exists, the old one is "another training" already (its fingerprint is not current)
    assert old.name in listed.output
    done = CliRunner().invoke(cli, [*args, "--yes"])
    assert done.exit_code == 0 and "deleted" in done.output
    assert not stray.exists() and not old.exists()
    assert "nothing to clean" in CliRunner().invoke(cli, args).output
