"""Base models as single-file checkpoints (SDXL / SD1.5, original key layout), loaded offline wherever
a base model is named; the demo bundle writes its tiny SDXL and SD1.5 that way too."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import torch

from conftest import TEST_CONFIG

FAKE = Path(__file__).resolve().parent / "fake_sd_scripts"


def test_shipped_component_configs_are_the_real_architectures():
    """The configs that complete a real SDXL / SD1.5 file build models of exactly the real sizes."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from synthlora.single_file import SHIPPED_CONFIGS

    def size(model):
        return sum(p.numel() for p in model.parameters())

    with init_empty_weights():
        unet = {f: size(UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SHIPPED_CONFIGS / f / "unet")))
                for f in ("sdxl", "sd15")}
        vae = size(AutoencoderKL.from_config(AutoencoderKL.load_config(SHIPPED_CONFIGS / "sdxl" / "vae")))
        clip_l = size(CLIPTextModel(CLIPTextConfig.from_pretrained(SHIPPED_CONFIGS / "sd15" / "text_encoder")))
        clip_g = size(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(SHIPPED_CONFIGS / "sdxl" / "text_encoder_2")))
    assert unet == {"sdxl": 2_567_463_684, "sd15": 859_520_964}
    assert (vae, clip_l, clip_g) == (83_653_863, 123_060_480, 694_659_840)


@pytest.mark.parametrize("family", ["sdxl", "sd15"])
def test_demo_checkpoint_file_is_the_original_layout_and_loads_offline_to_the_same_weights(demo_models, family):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    from synthlora.backends.base import load_sd_pipeline
    from synthlora.lora_format import kohya_unet_key, sdxl_unet_name
    from synthlora.single_file import checkpoint_family, checkpoint_keys

    path = demo_models / f"{family}.safetensors"
    keys = set(checkpoint_keys(path))
    assert checkpoint_family(path) == family
    # Original names, as sd-scripts / A1111 / ComfyUI read them.
    te = "conditioner.embedders.0.transformer.text_model." if family == "sdxl" else "cond_stage_model.transformer.text_model."
    assert f"{te}encoder.layers.0.self_attn.q_proj.weight" in keys
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in keys
    assert "model.diffusion_model.out.2.weight" in keys and not any(k.startswith(("unet.", "down_blocks")) for k in keys)
    if family == "sdxl":
        assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys

    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    folder = cls.from_pretrained(demo_models / family, **({"safety_checker": None} if family == "sd15" else {}))
    options = {"single_file": {f"{family}_components": str(demo_models / f"{family}-components")}}
    pipe = load_sd_pipeline(str(path), "train.base_model", family=family, **options)
    assert type(pipe).__name__ == type(folder).__name__
    for name in ("unet", "vae", "text_encoder") + (("text_encoder_2",) if family == "sdxl" else ()):
        want, got = getattr(folder, name).state_dict(), getattr(pipe, name).state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name
    # The module names the LoRA writer uses (lora_format) are the checkpoint's own.
    if family == "sdxl":
        for module, _ in folder.unet.named_modules():
            if module.endswith("attn2.to_k"):
                assert f"model.diffusion_model.{sdxl_unet_name(module)}.weight" in keys
                assert kohya_unet_key(module, "sdxl") == "lora_unet_" + sdxl_unet_name(module).replace(".", "_")


def test_what_a_checkpoint_file_needs_is_named_when_missing(demo_models, tmp_path):
    from safetensors.torch import save_file

    from synthlora.backends.base import load_sd_pipeline
    from synthlora.single_file import SingleFileError

    sdxl = str(demo_models / "sdxl.safetensors")
    # The shipped configs have no tokenizer: it comes from the local cache, never the network.
    with pytest.raises(SingleFileError, match=r"(?s)single_file\.tokenizer = 'nobody/no-such-tokenizer'.*hf download"):
        load_sd_pipeline(sdxl, "generate.model", single_file={"tokenizer": "nobody/no-such-tokenizer"})
    with pytest.raises(SingleFileError, match=r"single_file\.sdxl_components = 'nobody/no-such-model'"):
        load_sd_pipeline(sdxl, "generate.model", single_file={"sdxl_components": "nobody/no-such-model"})
    with pytest.raises(SingleFileError, match=r"is an sdxl checkpoint, but train\.family is 'sd15'"):
        load_sd_pipeline(sdxl, "train.base_model", family="sd15")
    with pytest.raises(SingleFileError, match=r"evaluate\.model = .*missing\.safetensors': no such file"):
        load_sd_pipeline(str(tmp_path / "missing.safetensors"), "evaluate.model")
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(tmp_path / "a-lora.safetensors"))
    with pytest.raises(SingleFileError, match="not an SDXL or SD1.5 checkpoint in the original layout"):
        load_sd_pipeline(str(tmp_path / "a-lora.safetensors"), "train.base_model")


def test_generate_renders_from_a_checkpoint_file(demo_models):
    from synthlora.backends.diffusers_gen import DiffusersGenerator

    gen = DiffusersGenerator(str(demo_models / "sdxl.safetensors"), device="cpu", model_options={
        "single_file": {"sdxl_components": str(demo_models / "sdxl-components")}})
    shot = {"prompt": "trg, standing", "negative_prompt": "", "steps": 2, "guidance_scale": 5.0, "width": 64,
            "height": 64, "seed": 1, "prompt_encoding": "75-token chunks"}
    image, info = gen.generate(shot)
    assert image.size == (64, 64) and info["pipeline"] == "StableDiffusionXLPipeline"


def test_example_config_trains_and_evaluates_on_the_checkpoint_file_and_kohya_gets_it(project, monkeypatch, tmp_path):
    """config/examples/single-file.yaml on the finished test project (generate.model kept, so its
    images are reused): the builtin trainer and the evaluation load the file; kohya's TOML names it."""
    from safetensors import safe_open

    from synthlora.kohya_run import run_kohya

    overlay = tmp_path / "keep-images.yaml"
    overlay.write_text("generate: {model: resources/demo-models/sdxl}\ntrain: {max_train_epochs: 1}\n")  # one epoch: faster
    configs = (*TEST_CONFIG, "config/examples/single-file.yaml", str(overlay))
    project.snakemake(configfiles=configs)
    (folder,) = [p.parent for p in project.path("results/mira/train").glob("*/summary.json")
                 if "sdxl.safetensors" in (p.parent / "train.toml").read_text()]
    toml = tomllib.loads((folder / "train.toml").read_text())
    assert toml["model"]["pretrained_model_name_or_path"] == "resources/demo-models/sdxl.safetensors"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["backend"] == "builtin" and len(summary["checkpoints"]) == 1
    outputs = json.loads(project.path(f"results/mira/eval/{folder.name}/000001/outputs.json").read_text())
    assert outputs["settings"]["model"] == "resources/demo-models/sdxl.safetensors"
    # The LoRA names and hashes its base as sd-scripts does (A1111's legacy hash, and the full SHA-256).
    with safe_open(str(folder / "epochs" / "mira-000001.safetensors"), "pt") as f:
        meta = f.metadata()
    data = project.path("resources/demo-models/sdxl.safetensors").read_bytes()
    assert meta["ss_sd_model_name"] == "sdxl.safetensors"
    assert meta["ss_sd_model_hash"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert meta["ss_new_sd_model_hash"] == hashlib.sha256(data).hexdigest()

    # train.backend: kohya gets the same TOML; the stand-in parses it as sd-scripts does.
    argv = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_SD_ARGV", str(argv))
    monkeypatch.chdir(project.root)
    run_kohya(folder / "train.toml", folder / "dataset.toml", "sdxl",
              {"sd_scripts": str(FAKE), "python": "python", "accelerate_args": []}, "fp", state_dir=tmp_path / "state")
    assert json.loads(argv.read_text())["flat"]["pretrained_model_name_or_path"] == "resources/demo-models/sdxl.safetensors"


def test_a_ckpt_file_loads_too(demo_models, tmp_path):
    """The older pickle form ({'state_dict': …}) of the same checkpoint."""
    from safetensors.torch import load_file

    from synthlora.backends.base import load_sd_pipeline

    state = load_file(demo_models / "sd15.safetensors")
    torch.save({"state_dict": state, "global_step": 1}, tmp_path / "sd15.ckpt")
    pipe = load_sd_pipeline(str(tmp_path / "sd15.ckpt"), "train.base_model",
                            single_file={"sd15_components": str(demo_models / "sd15-components")})
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert torch.equal(pipe.unet.conv_out.weight, state["model.diffusion_model.out.2.weight"])


def test_check_says_whether_checkpoint_files_find_their_tokenizer_offline(demo_models):
    from synthlora.single_file import tokenizer_problem

    assert "hf download nobody/no-such-tokenizer" in tokenizer_problem({"tokenizer": "nobody/no-such-tokenizer"})
    both = {f"{f}_components": str(demo_models / f"{f}-components") for f in ("sdxl", "sd15")}
    assert tokenizer_problem({**both, "tokenizer": "nobody/no-such-tokenizer"}) is None
    assert tokenizer_problem({"tokenizer": str(demo_models / "sdxl-components" / "tokenizer")}) is None
