"""LoRA files every tool loads, proven without weights.

- The builtin trainer's SDXL and SD1.5 LoRAs (UNet + text encoders) load with diffusers
  ``load_lora_weights`` on tiny pipelines: every module matched, output changes, scale 0 gives
  the base output back.
- The exporter applied to the FULL-size SDXL and SD1.5 architectures (meta device, no weights)
  names exactly the modules sd-scripts wraps (its logs: SDXL 722 UNet + 72 + 192 text-encoder
  modules, SD1.5 192 + 72), in sd-scripts' naming, and diffusers' own kohya converter maps every
  key to a real module of the right shape.
- Metadata keys and value types as sd-scripts writes them.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
from lora_check import assert_lora_changes_output

from synthlora.kohya import dataset_toml, sample_prompt_lines, train_toml, write_toml

TRAIN = {"resolution": 64, "num_repeats": 2, "batch_size": 2, "max_train_epochs": 2, "save_every_n_epochs": 1,
         "network_dim": 4, "network_alpha": 2.0, "unet_lr": 1e-3, "text_encoder_lr": 1e-3, "seed": 3}


def make_dataset(root, n=3):
    import numpy as np
    from PIL import Image

    d = root / "dataset" / "2_trg"
    d.mkdir(parents=True)
    rs = np.random.RandomState(0)
    for i in range(n):
        Image.fromarray(rs.randint(0, 255, (64, 64, 3), dtype=np.uint8)).save(d / f"{i}.png")
        (d / f"{i}.txt").write_text(f"trg, red scarf, {'standing' if i % 2 else 'sitting'}")
    return root / "dataset"


def train_tiny(root, base, family, cache, **over):
    from synthlora.train import train_lora

    cfg = {**TRAIN, "base_model": str(base), "family": family, **over}
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "dataset").exists():
        make_dataset(root)
    write_toml(root / "train.toml", train_toml(cfg, "x", str(root / "lora" / "epochs"), str(root / "prompts.txt")))
    write_toml(root / "dataset.toml", dataset_toml(cfg, str(root / "dataset"), "trg"))
    (root / "prompts.txt").write_text(sample_prompt_lines(cfg))
    return train_lora(root / "train.toml", root / "dataset.toml", family=family, device="cpu",
                      fingerprint=json.dumps(cfg, sort_keys=True), latent_cache_dir=cache,
                      sample_prompts=root / "prompts.txt")


@pytest.fixture(scope="module", params=["sdxl", "sd15"])
def trained(request, demo_models, tmp_path_factory):
    family = request.param
    root = tmp_path_factory.mktemp(f"lora-{family}")
    extra = {"clip_skip": 2} if family == "sd15" else {}
    summary = train_tiny(root / "a", demo_models / family, family, root / "cache",
                         sample_prompts=["trg, solo"], sample_steps=2, **extra)
    return family, demo_models / family, summary, root


def _pipe(family, base):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    if family == "sdxl":
        return StableDiffusionXLPipeline.from_pretrained(str(base))
    return StableDiffusionPipeline.from_pretrained(str(base), safety_checker=None, requires_safety_checker=False)


def test_builtin_lora_loads_fully_in_diffusers(trained):
    from safetensors.torch import load_file

    from synthlora.lora_format import TEXT_TARGETS, UNET_TARGETS

    family, base, summary, _ = trained
    state = load_file(summary["checkpoints"][-1]["path"])
    pipe = _pipe(family, base)
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if family == "sdxl" else [])
    want_unet = [n for n, _ in pipe.unet.named_modules() if re.fullmatch(UNET_TARGETS, n)]
    want_te = [[n for n, _ in te.named_modules() if re.fullmatch(TEXT_TARGETS, n)] for te in encoders]
    assert summary["checkpoints"][-1]["modules"] == len(want_unet) + sum(map(len, want_te))

    expected = [(pipe.unet, len(want_unet))] + [(te, len(names)) for te, names in zip(encoders, want_te)]
    assert_lora_changes_output(pipe, state, "trg, solo", "c", expected, boost=300)


def test_metadata_is_what_sd_scripts_writes(trained):
    from safetensors import safe_open

    family, _, summary, _ = trained
    path = summary["checkpoints"][-1]["path"]
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert all(isinstance(v, str) for v in meta.values())
    for key in ("ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_base_model_version", "ss_v2",
                "ss_num_epochs", "ss_steps", "ss_learning_rate", "ss_unet_lr", "ss_text_encoder_lr",
                "ss_optimizer", "ss_mixed_precision", "ss_seed", "ss_output_name", "ss_num_train_images",
                "ss_training_started_at", "modelspec.architecture", "modelspec.title", "modelspec.sai_model_spec"):
        assert key in meta, key
    assert meta["ss_network_module"] == "networks.lora" and float(meta["ss_network_alpha"]) == 2.0
    assert meta["ss_base_model_version"] == {"sdxl": "sdxl_base_v1-0", "sd15": "sd_v1"}[family]
    assert meta["modelspec.architecture"] == {"sdxl": "stable-diffusion-xl-v1-base/lora",
                                              "sd15": "stable-diffusion-v1/lora"}[family]
    assert json.loads(meta["ss_tag_frequency"]) == {"2_trg": {"trg": 3, "red scarf": 3, "sitting": 2, "standing": 1}}
    assert json.loads(meta["ss_dataset_dirs"]) == {"2_trg": {"n_repeats": 2, "img_count": 3}}
    assert meta["ss_num_train_images"] == "6" and meta["ss_steps"] == str(summary["steps"])
    # sshs_model_hash: SHA-256 of the file after its header (sd-scripts' addnet hash)
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    assert meta["sshs_model_hash"] == hashlib.sha256(data[8 + n:]).hexdigest()


def test_samples_per_saved_epoch_and_latents_cached_by_content(trained, tmp_path):
    family, base, summary, root = trained
    assert [p.rsplit("/", 1)[-1] for p in summary["samples"]] == ["x-000001-00.png", "x-000002-00.png"]
    assert summary["latents_from_cache"] == 0
    # other hyperparameters, same images: nothing is re-encoded
    other = train_tiny(tmp_path / "b", base, family, root / "cache", unet_lr=5e-4, max_train_epochs=1)
    assert other["latents_from_cache"] == 3


# ---- full-size architectures on the meta device ------------------------------------------------

SDXL_UNET = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
SD15_UNET = dict(sample_size=64, block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 attention_head_dim=8, cross_attention_dim=768)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
CLIP_G = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20, projection_dim=1280)
# sd-scripts' own log lines: "create LoRA for U-Net: N modules", "... Text Encoder 1/2: N modules"
SD_SCRIPTS_COUNTS = {"sdxl": (722, [72, 192]), "sd15": (192, [72])}
KEY_FORMAT = {
    "sdxl": re.compile(r"^lora_(unet_(input_blocks_\d+_1|middle_block_1|output_blocks_\d+_1)_\w+"
                       r"|te[12]_text_model_encoder_layers_\d+_(self_attn_[qkvout]+_proj|mlp_fc[12]))$"),
    "sd15": re.compile(r"^lora_(unet_(down_blocks_\d_attentions_\d|mid_block_attentions_0|up_blocks_\d_attentions_\d)_\w+"
                       r"|te_text_model_encoder_layers_\d+_(self_attn_[qkvout]+_proj|mlp_fc[12]))$"),
}


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_exporter_names_every_module_of_the_full_size_architecture(family):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
    from peft import LoraConfig, get_peft_model_state_dict
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from synthlora.lora_format import TEXT_TARGETS, UNET_TARGETS, kohya_text_key, kohya_unet_key, peft_to_kohya

    with torch.device("meta"):
        unet = UNet2DConditionModel(**(SDXL_UNET if family == "sdxl" else SD15_UNET))
        tes = [CLIPTextModel(CLIPTextConfig(**CLIP_L))]
        if family == "sdxl":
            tes.append(CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)))
        unet.add_adapter(LoraConfig(r=4, lora_alpha=2, target_modules=UNET_TARGETS))
        for te in tes:
            te.add_adapter(LoraConfig(r=4, lora_alpha=2, target_modules=TEXT_TARGETS))
    kohya = {"unet": peft_to_kohya(get_peft_model_state_dict(unet), lambda m: kohya_unet_key(m, family), 2.0)}
    for n, te in enumerate(tes, start=1):
        kohya[n] = peft_to_kohya(get_peft_model_state_dict(te), lambda m, n=n: kohya_text_key(m, n, family), 2.0)
    unet_n, te_n = SD_SCRIPTS_COUNTS[family]
    assert len(kohya["unet"]) // 3 == unet_n and [len(kohya[n]) // 3 for n in range(1, len(tes) + 1)] == te_n
    state = {k: (torch.zeros(v.shape) if v.is_meta else v) for part in kohya.values() for k, v in part.items()}
    for key in {k.rsplit(".", 2)[0] if "lora_" in k.rsplit(".", 2)[-2] else k.rsplit(".", 1)[0] for k in state}:
        assert KEY_FORMAT[family].match(key), key

    # diffusers' own kohya converter (what load_lora_weights runs) must map every key to a real
    # module of the right shape; unmatched or misshapen keys would load silently or fail late
    loader = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    diffusers_format, _ = loader.lora_state_dict(state, unet_config=unet.config)
    converted = {}  # the peft names load_lora_weights then injects
    for prefix in ("unet", "text_encoder", "text_encoder_2"):
        part = {k[len(prefix) + 1:]: v for k, v in diffusers_format.items() if k.split(".", 1)[0] == prefix}
        if not part:
            continue
        part = convert_unet_state_dict_to_peft(part) if prefix == "unet" else convert_state_dict_to_peft(part)
        converted.update({f"{prefix}.{k}": v for k, v in part.items()})
    assert len(converted) == len(diffusers_format)
    models = {"unet": unet, "text_encoder": tes[0], "text_encoder_2": tes[-1]}
    modules = {p: dict(m.named_modules()) for p, m in models.items()}
    matched = 0
    for key, tensor in converted.items():
        prefix, rest = key.split(".", 1)
        m = re.match(r"^(.*)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$", rest) or \
            re.match(r"^(.*)\.lora_(A|B)\.weight$", rest)
        assert m, key
        module_name, kind = m[1], {"down": "A", "up": "B"}.get(m[2], m[2])
        if module_name not in modules[prefix]:  # transformers 5 CLIP modules have no `text_model.`
            module_name = module_name.removeprefix("text_model.")
        module = modules[prefix].get(module_name)
        assert module is not None, f"{key}: no such module"
        weight = getattr(module, "base_layer", module).weight
        if kind == "A":
            assert tensor.shape[1] == weight.shape[1] and tuple(tensor.shape[2:]) == tuple(weight.shape[2:]), key
        else:
            assert tensor.shape[0] == weight.shape[0], key
        matched += 1
    assert matched == 2 * (unet_n + sum(te_n))
