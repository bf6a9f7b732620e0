"""Stand-in for kohya sd-scripts' sdxl_train_network.py / train_network.py (sd-scripts is not
installable here). It parses the same arguments, reads the TOMLs the same way (sections
flattened), rejects what sd-scripts rejects in the dataset config, and writes the files
sd-scripts writes: {name}-{epoch:06d}.safetensors every save_every_n_epochs, {name}.safetensors
at the end, {name}-{epoch:06d}-state/ with save_state, and resumes from --resume (the epoch in
its train_state.json). Test knobs: FAKE_SD_FAIL_AFTER_EPOCH, FAKE_SD_REJECT."""

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--config_file", required=True)
p.add_argument("--dataset_config", required=True)
p.add_argument("--resume")
args = p.parse_args()

with open(args.config_file, "rb") as f:
    flat = {k: v for table in tomllib.load(f).values() for k, v in table.items()}
with open(args.dataset_config, "rb") as f:
    dataset = tomllib.load(f)
if os.environ.get("FAKE_SD_REJECT"):
    print("voluptuous.error.MultipleInvalid: extra keys not allowed @ data['datasets'][0]['bogus']", flush=True)
    sys.exit(1)
for ds in dataset["datasets"]:
    for sub in ds["subsets"]:
        if not Path(sub["image_dir"]).is_dir():
            print(f"not a directory: {sub['image_dir']}", flush=True)
            sys.exit(1)

Path(os.environ.get("FAKE_SD_ARGV", os.devnull)).write_text(json.dumps({"argv": sys.argv, "flat": flat}))
out, name = Path(flat["output_dir"]), flat["output_name"]
out.mkdir(parents=True, exist_ok=True)
epochs, every = flat["max_train_epochs"], flat.get("save_every_n_epochs") or 10**9
start = 0
if args.resume:
    start = json.loads((Path(args.resume) / "train_state.json").read_text())["current_epoch"]
    print(f"resume from {args.resume}: epoch {start}", flush=True)
steps_per_epoch = 2


def save(path, epoch):
    from safetensors.numpy import save_file
    import numpy as np

    # One module that exists in both tiny families (CLIP-L layer 0, hidden 32), named as sd-scripts
    # names it: lora_te1_… for SDXL, lora_te_… for SD1.x.
    key = ("lora_te1_" if "sdxl" in Path(__file__).name else "lora_te_") + "text_model_encoder_layers_0_self_attn_q_proj"
    save_file({f"{key}.alpha": np.array(float(flat["network_alpha"]), dtype=np.float32),
               f"{key}.lora_down.weight": np.zeros((flat["network_dim"], 32), np.float32),
               f"{key}.lora_up.weight": np.zeros((32, flat["network_dim"]), np.float32)},
              str(path), metadata={"ss_steps": str(epoch * steps_per_epoch), "ss_epoch": str(epoch)})


for epoch in range(start + 1, epochs + 1):
    print(f"\nepoch {epoch}/{epochs}", flush=True)
    for s in range(steps_per_epoch):
        print(f"\rsteps: {s + 1}/{steps_per_epoch} avr_loss={0.5 / epoch:.4f}", end="", flush=True)
    print(flush=True)
    if epoch < epochs and epoch % every == 0:
        save(out / f"{name}-{epoch:06d}.safetensors", epoch)
        if flat.get("save_state"):
            d = out / f"{name}-{epoch:06d}-state"
            d.mkdir(exist_ok=True)
            (d / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": epoch * steps_per_epoch}))
    if os.environ.get("FAKE_SD_FAIL_AFTER_EPOCH") == str(epoch):
        print("Killed", flush=True)
        sys.exit(137)
save(out / f"{name}.safetensors", epochs)
print("model saved.", flush=True)
