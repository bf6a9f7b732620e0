"""The ``kohya`` trainer backend: run sd-scripts on the generated TOMLs.

``<python> -m accelerate.commands.launch <accelerate_args> <sd_scripts>/<script> --config_file
train.toml --dataset_config dataset.toml [--resume <state>]``, with its output streamed into the
job log. Afterwards the files follow the project's checkpoint contract: sd-scripts' final
``{name}.safetensors`` becomes ``{name}-{last:06d}.safetensors``, and every saved epoch must be
there. Copies of finished epochs' LoRAs are kept under ``state/kohya/`` of the training's folder as
they appear, so a job that is interrupted (and whose outputs Snakemake then deletes) resumes from
sd-scripts' newest saved state (``save_state``) without redoing finished epochs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from synthlora.io import atomic_path
from synthlora.kohya import (
    SCRIPTS,
    KohyaConfigError,
    checkpoint_name,
    read_toml,
    saved_epochs,
    state_name,
    validate_dataset,
    validate_train,
)
from synthlora.verify import safetensors_problem

LOSS = re.compile(r"avr_loss=([0-9.eE+-]+)")
EPOCH = re.compile(r"\bepoch (\d+)/(\d+)")


def command(kohya_cfg: dict, family: str, train_toml: str, dataset_toml: str, resume: str | None = None) -> list[str]:
    """The launch command, after checking that sd-scripts is where the config says."""
    root = Path(kohya_cfg.get("sd_scripts", "../sd-scripts"))
    script = root / SCRIPTS[family]
    if not root.is_dir():
        raise KohyaConfigError(
            f"train.kohya.sd_scripts: {str(root)!r} is not a directory. Clone kohya sd-scripts there "
            "(git clone https://github.com/kohya-ss/sd-scripts) and install it (envs/kohya.yaml), "
            "or point train.kohya.sd_scripts at your checkout")
    if not script.is_file():
        raise KohyaConfigError(f"train.kohya.sd_scripts: {str(root)!r} has no {SCRIPTS[family]} "
                               f"(train.family {family!r}); is it a kohya sd-scripts checkout?")
    python = kohya_cfg.get("python", "python")
    if python == "python":
        python = sys.executable if not shutil.which("python") else "python"
    cmd = [python, "-m", "accelerate.commands.launch", *kohya_cfg.get("accelerate_args", []), str(script),
           "--config_file", str(train_toml), "--dataset_config", str(dataset_toml)]
    if resume:
        cmd += ["--resume", str(resume)]
    return cmd


def _stream(proc: subprocess.Popen, watch, tail: list[str]) -> list[float]:
    """Copy the child's output to our stdout (the job log) as it comes; collect losses."""
    losses: list[float] = []
    buf = ""
    fd = proc.stdout.fileno()
    while True:
        chunk = os.read(fd, 8192)
        if not chunk:
            break
        text = chunk.decode("utf-8", "replace")
        sys.stdout.write(text)
        sys.stdout.flush()
        buf += text
        *lines, buf = re.split(r"[\r\n]", buf)
        for line in lines:
            if line.strip():
                tail.append(line)
                del tail[:-60]
            if m := LOSS.search(line):
                losses.append(float(m[1]))
        watch()
    return losses


def run_kohya(train_toml: str | Path, dataset_toml: str | Path, family: str, kohya_cfg: dict,
              fingerprint: str | None = None, state_dir: str | Path | None = None) -> dict[str, Any]:
    doc = read_toml(train_toml)
    flat = validate_train(doc, str(train_toml), family=family)
    validate_dataset(read_toml(dataset_toml), str(dataset_toml), flat)
    name, out_dir = flat["output_name"], Path(flat["output_dir"])
    epochs = int(flat["max_train_epochs"])
    wanted = saved_epochs({"max_train_epochs": epochs, "save_every_n_epochs": flat.get("save_every_n_epochs", epochs)})
    keep = Path(state_dir) / "kohya" if state_dir else out_dir.parent / "state" / "kohya"
    keep.mkdir(parents=True, exist_ok=True)
    fp_file = keep / "fingerprint.txt"
    if not fp_file.exists() or fp_file.read_text().strip() != (fingerprint or ""):
        # another training: nothing of it may be resumed
        for d in out_dir.glob(f"{name}-*-state"):
            shutil.rmtree(d, ignore_errors=True)
        for f in keep.glob("*.safetensors"):
            f.unlink()
        fp_file.write_text((fingerprint or "") + "\n")

    resume = None
    if flat.get("save_state") and fingerprint:
        states = sorted(out_dir.glob(f"{name}-[0-9][0-9][0-9][0-9][0-9][0-9]-state"))
        if states:
            resume = states[-1]
            done = int(resume.name[len(name) + 1:len(name) + 7])
            print(f"resuming sd-scripts from {resume} (epoch {done} of {epochs})", flush=True)

    cmd = command(kohya_cfg, family, str(train_toml), str(dataset_toml), str(resume) if resume else None)
    print("$ " + " ".join(cmd), flush=True)
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)

    def watch():  # keep a copy of each finished epoch's LoRA beside the state, as it appears
        for e in wanted:
            src = out_dir / checkpoint_name(name, e)
            if src.exists() and not (keep / src.name).exists() and not safetensors_problem(src):
                with atomic_path(keep / src.name) as tmp:
                    shutil.copyfile(src, tmp)

    tail: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        losses = _stream(proc, watch, tail)
    finally:
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"sd-scripts {SCRIPTS[family]} failed (exit {rc}); last lines:\n" + "\n".join(tail[-25:]))
    final = out_dir / f"{name}.safetensors"
    last = out_dir / checkpoint_name(name, epochs)
    if final.exists():
        os.replace(final, last)
    watch()
    for e in wanted:  # epochs finished before an interruption (whose outputs Snakemake deleted) come back
        kept, dest = keep / checkpoint_name(name, e), out_dir / checkpoint_name(name, e)
        if kept.exists() and not dest.exists():
            with atomic_path(dest) as tmp:
                shutil.copyfile(kept, tmp)
    missing = [str(out_dir / checkpoint_name(name, e)) for e in wanted if not (out_dir / checkpoint_name(name, e)).exists()]
    if missing:
        raise RuntimeError(f"sd-scripts finished but did not write {missing}; does it honour save_every_n_epochs?")
    checkpoints = []
    for e in wanted:
        path = out_dir / checkpoint_name(name, e)
        meta = _metadata(path)
        checkpoints.append({"epoch": e, "path": str(path), "step": int(meta.get("ss_steps", 0) or 0),
                            "modules": _modules(path)})
    steps_per_epoch = max(1, len(losses) // max(1, epochs))
    return {"steps": checkpoints[-1]["step"] or len(losses), "final_loss": losses[-1] if losses else None,
            "family": family, "backend": "kohya", "resumed_from_epoch": int(resume.name[len(name) + 1:len(name) + 7]) if resume else 0,
            "seconds": round(time.time() - started, 2), "checkpoints": checkpoints, "command": cmd,
            "losses": [{"step": i, "epoch": min(epochs, i // steps_per_epoch + 1), "loss": v} for i, v in enumerate(losses)]}


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return f.metadata() or {}


def _modules(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        return sum(1 for k in f.keys() if k.endswith(".alpha"))
