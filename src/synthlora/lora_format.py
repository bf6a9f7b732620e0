"""The kohya / A1111 / ComfyUI LoRA key format, from peft module names.

sd-scripts names SDXL UNet modules in the original (SGM) layout and text-encoder modules as
``lora_te{1,2}_text_model_encoder_layers_N_…`` (FIELD-NOTES); consumers drop keys they cannot
match without a word, so the names here must be exactly those.
"""

from __future__ import annotations

import re

# Modules sd-scripts' networks.lora wraps: every Linear inside a Transformer2DModel (UNet) and
# inside CLIPAttention / CLIPMLP (text encoders).
UNET_TARGETS = (r".*attentions\.\d+\.(proj_in|proj_out|transformer_blocks\.\d+\."
                r"(attn1\.(to_q|to_k|to_v|to_out\.0)|attn2\.(to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj|ff\.net\.2))")
TEXT_TARGETS = r".*encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))"

_DOWN = re.compile(r"^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$")
_MID = re.compile(r"^mid_block\.attentions\.0\.(.*)$")
_UP = re.compile(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$")


def sdxl_unet_name(module: str, layers_per_block: int = 2) -> str:
    """diffusers SDXL UNet module path → SGM (sd-scripts) path."""
    if m := _DOWN.match(module):
        b, i, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{(layers_per_block + 1) * b + i + 1}.1.{rest}"
    if m := _MID.match(module):
        return f"middle_block.1.{m[1]}"
    if m := _UP.match(module):
        b, i, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{(layers_per_block + 1) * b + i}.1.{rest}"
    raise ValueError(f"no SGM name for UNet module {module!r}")


def kohya_unet_key(module: str, family: str) -> str:
    path = sdxl_unet_name(module) if family == "sdxl" else module  # sd-scripts keeps diffusers names for SD1.x
    return "lora_unet_" + path.replace(".", "_")


def kohya_text_key(module: str, encoder: int, family: str) -> str:
    path = module[len("text_model."):] if module.startswith("text_model.") else module
    prefix = f"lora_te{encoder}_" if family == "sdxl" else "lora_te_"
    return prefix + "text_model_" + path.replace(".", "_")


def peft_to_kohya(state: dict, to_key, alpha: float) -> dict:
    """peft ``<module>.lora_A/B.weight`` tensors → kohya ``lora_down/lora_up/alpha`` tensors."""
    import torch

    out = {}
    for name, tensor in state.items():
        m = re.match(r"^(?:base_model\.model\.)?(.*)\.lora_([AB])(?:\.default)?\.weight$", name)
        if not m:
            raise ValueError(f"unexpected peft key {name!r}")
        key = to_key(m[1])
        out[f"{key}.{'lora_down' if m[2] == 'A' else 'lora_up'}.weight"] = tensor.detach().contiguous()
        out[f"{key}.alpha"] = torch.tensor(float(alpha))
    return out
