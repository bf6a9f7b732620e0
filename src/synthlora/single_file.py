"""Base models as users hold them: single-file checkpoints (``.safetensors``, ``.ckpt``) of SDXL and
SD1.5 in the original (ldm / sgm) key layout, and v-prediction bases.

A single file holds the weights only. The component configs (UNet, VAE, text encoders, scheduler)
come from a diffusers folder or hub-cache id named in ``single_file.<family>_components``, or by
default from the configs shipped in ``synthlora/model_configs/<family>`` (those of
stabilityai/stable-diffusion-xl-base-1.0 and stable-diffusion-v1-5). The CLIP tokenizer files are
in no checkpoint: they come from that components folder when it has them, else from
``single_file.tokenizer`` (a folder, or a hub id already in the local Hugging Face cache — the one
kohya sd-scripts itself loads). Nothing here goes to the network.

The other direction, ``original_state_dict``, writes a diffusers pipeline's weights in the original
layout (the demo bundle's single-file checkpoints).
"""

from __future__ import annotations

from pathlib import Path

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SHIPPED_CONFIGS = Path(__file__).parent / "model_configs"
DEFAULT_TOKENIZER = "openai/clip-vit-large-patch14"
FAMILIES = ("sdxl", "sd15")
# Where each family's text encoders sit in the original layout.
_SDXL_TE1, _SDXL_TE2 = "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model."
_SD15_TE = "cond_stage_model.transformer."


class SingleFileError(ValueError):
    pass


def is_single_file(model: str) -> bool:
    """A base model named by a checkpoint file (rather than a diffusers folder or hub id)."""
    return Path(str(model)).suffix.lower() in SINGLE_FILE_SUFFIXES


def checkpoint_keys(path: str | Path) -> list[str]:
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    state = state.get("state_dict", state)
    return list(state)


def checkpoint_family(path: str | Path, key: str = "model") -> str:
    """'sdxl' or 'sd15', from the keys of a checkpoint in the original layout."""
    keys = checkpoint_keys(path)
    if any(k.startswith(_SDXL_TE2) for k in keys):
        return "sdxl"
    if any(k.startswith(_SD15_TE) for k in keys):
        return "sd15"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise SingleFileError(f"{key} = {str(path)!r} is a Stable Diffusion 2.x checkpoint; only SDXL and SD1.5 "
                              "single files are supported (convert it to a diffusers folder and name that)")
    sample = ", ".join(sorted(keys)[:3])
    raise SingleFileError(f"{key} = {str(path)!r} is not an SDXL or SD1.5 checkpoint in the original layout (no "
                          f"'{_SDXL_TE2}*' or '{_SD15_TE}*' keys; it starts {sample}). A diffusers pipeline is "
                          "a folder: name the folder instead")


def _local_folder(name: str, what: str) -> Path:
    """A folder, or a hub id resolved in the local Hugging Face cache only (never downloaded)."""
    if Path(name).is_dir():
        return Path(name)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        raise SingleFileError(
            f"{what} = {name!r}: no such folder, and not in the local Hugging Face cache ({type(exc).__name__}). "
            f"Runs never download: fetch it once on a machine with network (`hf download {name}`), or name a "
            "folder that holds it") from None


def components_folder(family: str, components: str = "") -> Path:
    """The folder whose configs complete a single-file checkpoint of ``family``."""
    if not components:
        return SHIPPED_CONFIGS / family
    folder = _local_folder(components, f"single_file.{family}_components")
    if not (folder / "model_index.json").is_file() or not (folder / "unet" / "config.json").is_file():
        raise SingleFileError(f"single_file.{family}_components = {components!r}: {folder} is not a diffusers "
                              "pipeline folder (no model_index.json / unet/config.json)")
    return folder


def _has_tokenizer(folder: Path, sub: str) -> bool:
    return (folder / sub / "vocab.json").is_file() or (folder / sub / "tokenizer.json").is_file()


def tokenizers(family: str, folder: Path, tokenizer: str = DEFAULT_TOKENIZER) -> dict:
    """Tokenizers to pass to from_single_file: none when ``folder`` has its own."""
    from transformers import CLIPTokenizer

    names = ["tokenizer"] + (["tokenizer_2"] if family == "sdxl" else [])
    if all(_has_tokenizer(folder, n) for n in names):
        return {}
    source = _local_folder(tokenizer or DEFAULT_TOKENIZER, "single_file.tokenizer")
    sub = "tokenizer" if _has_tokenizer(source, "tokenizer") else ""
    out = {"tokenizer": CLIPTokenizer.from_pretrained(source, subfolder=sub, local_files_only=True)}
    if family == "sdxl":  # SDXL's second tokenizer is the same BPE, padded with '!' (as sd-scripts does)
        out["tokenizer_2"] = CLIPTokenizer.from_pretrained(source, subfolder=sub, local_files_only=True, pad_token="!")
    return out


def tokenizer_problem(options: dict) -> str | None:
    """Why checkpoint files could not get their CLIP tokenizer offline under the single_file section
    ``options``, or None (for `synthlora check`)."""
    folders = [options.get(f"{f}_components", "") for f in FAMILIES]
    if all(folders) and all(Path(f).is_dir() and _has_tokenizer(Path(f), "tokenizer") for f in folders):
        return None
    try:
        _local_folder(options.get("tokenizer") or DEFAULT_TOKENIZER, "single_file.tokenizer")
    except SingleFileError as exc:
        return str(exc)
    return None


def load_single_file(path: str | Path, key: str, family: str | None = None, options: dict | None = None, **kwargs):
    """An SDXL or SD1.5 pipeline from one checkpoint file, offline; ``options`` is the ``single_file``
    config section (components folder per family, tokenizer)."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(path)
    if not path.is_file():
        raise SingleFileError(f"{key} = {str(path)!r}: no such file (a single-file checkpoint is named by its path; "
                              "check the path, relative to the working directory)")
    found = checkpoint_family(path, key)
    if family and family != found:
        raise SingleFileError(f"{key} = {str(path)!r} is an {found} checkpoint, but train.family is {family!r}: "
                              "set train.family to match the base model")
    options = options or {}
    folder = components_folder(found, options.get(f"{found}_components", ""))
    cls = StableDiffusionXLPipeline if found == "sdxl" else StableDiffusionPipeline
    extra = tokenizers(found, folder, options.get("tokenizer", DEFAULT_TOKENIZER))
    if found == "sd15":
        extra.update(safety_checker=None, requires_safety_checker=False)
    for name in extra:
        kwargs.pop(name, None)
    return cls.from_single_file(str(path), config=str(folder), local_files_only=True, **extra, **kwargs)


def model_options(config: dict, model: str) -> dict:
    """How to load ``model`` (a stage's model) under the run's config: the single_file section, and
    the base model's prediction type when ``model`` is the training's base model (train.v_parameterization
    and train.zero_terminal_snr describe that model, and no other)."""
    train = config.get("train", {})
    same = str(model).rstrip("/") == str(train.get("base_model", "")).rstrip("/")
    return {"single_file": dict(config.get("single_file", {})),
            "v_parameterization": bool(same and train.get("v_parameterization")),
            "zero_terminal_snr": bool(same and train.get("zero_terminal_snr"))}


def prediction_pixels(config: dict, model: str) -> dict:
    """What a v-prediction base adds to a shot key or an evaluation's settings (nothing for an
    epsilon base, so their keys stay as they were): correcting the setting renders anew."""
    opts = model_options(config, model)
    if not (opts["v_parameterization"] or opts["zero_terminal_snr"]):
        return {}
    return {"prediction": "v_prediction" if opts["v_parameterization"] else "epsilon",
            "zero_terminal_snr": opts["zero_terminal_snr"]}


# ---- v-prediction ------------------------------------------------------------------------------


def prediction_scheduler(scheduler, v_prediction: bool = False, zero_terminal_snr: bool = False):
    """The sampling scheduler for the base's prediction type: unchanged for an epsilon base; for a
    v-prediction base the same schedule predicting velocity, and with zero terminal SNR rescaled
    betas and 'trailing' timesteps (so sampling starts from pure noise). PNDM cannot rescale its
    betas: it is replaced by Euler, which can."""
    if not v_prediction and not zero_terminal_snr:
        return scheduler
    from diffusers import EulerDiscreteScheduler

    cls = type(scheduler)
    if zero_terminal_snr and "rescale_betas_zero_snr" not in cls.__init__.__code__.co_varnames:
        cls = EulerDiscreteScheduler
    options = {"prediction_type": "v_prediction" if v_prediction else "epsilon"}
    if zero_terminal_snr:
        options.update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    return cls.from_config(scheduler.config, **options)


# ---- diffusers → original layout ----------------------------------------------------------------

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}


def _unet_key(key: str, config: dict) -> str:
    """One diffusers UNet2DConditionModel key → its ldm name (input/middle/output_blocks)."""
    lpb = int(config["layers_per_block"])
    parts = key.split(".")
    module, rest = ".".join(parts[:-1]), parts[-1]
    for d, o in _UNET_FIXED.items():
        if module == d:
            return f"{o}.{rest}"

    def resnet(tail: str) -> str:
        for d, o in _RESNET:
            if tail == d or tail.startswith(d + "."):
                return o + tail[len(d):]
        return tail

    p = key.split(".")
    if p[0] == "down_blocks":
        i = int(p[1])
        if p[2] == "downsamplers":  # down_blocks.i.downsamplers.0.conv.* → input_blocks.N.0.op.*
            return f"input_blocks.{(lpb + 1) * (i + 1)}.0.op." + ".".join(p[5:])
        j, tail = int(p[3]), ".".join(p[4:])
        n = (lpb + 1) * i + j + 1
        return f"input_blocks.{n}.0.{resnet(tail)}" if p[2] == "resnets" else f"input_blocks.{n}.1.{tail}"
    if p[0] == "mid_block":
        if p[1] == "attentions":
            return "middle_block.1." + ".".join(p[3:])
        return f"middle_block.{2 * int(p[2])}.{resnet('.'.join(p[3:]))}"
    if p[0] == "up_blocks":
        i = int(p[1])
        if p[2] == "upsamplers":  # after the resnet (and attention, when the level has one)
            has_attn = config["up_block_types"][i].startswith("CrossAttn")
            return f"output_blocks.{(lpb + 1) * i + lpb}.{2 if has_attn else 1}." + ".".join(p[4:])
        j, tail = int(p[3]), ".".join(p[4:])
        n = (lpb + 1) * i + j
        return f"output_blocks.{n}.0.{resnet(tail)}" if p[2] == "resnets" else f"output_blocks.{n}.1.{tail}"
    raise SingleFileError(f"no original-layout name for UNet weight {key!r}")


def _vae_key(key: str, levels: int) -> str:
    p = key.split(".")
    side = p[0]  # encoder / decoder, or quant_conv / post_quant_conv
    if side not in ("encoder", "decoder"):
        return key
    rest = p[1:]
    renames = {"conv_norm_out": "norm_out", "conv_shortcut": "nin_shortcut"}
    if rest[0] in ("down_blocks", "up_blocks"):
        i = int(rest[1]) if rest[0] == "down_blocks" else levels - 1 - int(rest[1])
        name = "down" if rest[0] == "down_blocks" else "up"
        if rest[2] in ("downsamplers", "upsamplers"):
            tail = f"{'downsample' if name == 'down' else 'upsample'}." + ".".join(rest[4:])
        else:
            tail = f"block.{rest[3]}." + ".".join(renames.get(x, x) for x in rest[4:])
        return f"{side}.{name}.{i}.{tail}"
    if rest[0] == "mid_block":
        if rest[1] == "resnets":
            return f"{side}.mid.block_{int(rest[2]) + 1}." + ".".join(renames.get(x, x) for x in rest[3:])
        attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        tail = [attn.get(x, x) for x in rest[3:]]
        if tail[0] == "proj_out" and tail[1] == "0":
            tail.pop(1)
        return f"{side}.mid.attn_1." + ".".join(tail)
    return f"{side}." + ".".join(renames.get(x, x) for x in rest)


def _openclip(state: dict) -> dict:
    """A transformers CLIP text model with projection → OpenCLIP names (q/k/v packed into in_proj)."""
    import torch

    out, qkv = {}, {}
    names = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
             ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))
    for k, v in state.items():
        k = k if k.startswith(("text_model.", "text_projection")) else "text_model." + k
        if k == "text_projection.weight":
            out["text_projection"] = v.T.contiguous()
        elif k == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif k == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif k.startswith("text_model.final_layer_norm."):
            out["ln_final." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("text_model.encoder.layers."):
            n, tail = k.split(".")[3], ".".join(k.split(".")[4:])
            base = f"transformer.resblocks.{n}."
            if tail.startswith("self_attn.") and tail.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                kind = tail.rsplit(".", 1)[1]
                qkv.setdefault((base, kind), {})[tail.split(".")[1][0]] = v
                continue
            for d, o in names:
                if tail.startswith(d + "."):
                    tail = o + tail[len(d):]
            out[base + tail] = v
    for (base, kind), parts in qkv.items():
        out[f"{base}attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def original_state_dict(pipe, family: str) -> dict:
    """A diffusers SDXL / SD1.5 pipeline's weights under the original checkpoint's key names, as
    sd-scripts, A1111 and ComfyUI read them (and diffusers' from_single_file converts back)."""
    unet_cfg = dict(pipe.unet.config)
    levels = len(pipe.vae.config.block_out_channels)
    state = {"model.diffusion_model." + _unet_key(k, unet_cfg): v for k, v in pipe.unet.state_dict().items()}
    for k, v in pipe.vae.state_dict().items():
        name = _vae_key(k, levels)
        if ".mid.attn_1." in name and name.endswith("weight") and v.ndim == 2:
            v = v[:, :, None, None]  # the original VAE attention is 1x1 convolutions
        state["first_stage_model." + name] = v

    def clip(model) -> dict:  # transformers may drop the text_model. prefix; the original has it
        return {(k if k.startswith("text_model.") else "text_model." + k): v for k, v in model.state_dict().items()}

    if family == "sdxl":
        state.update({_SDXL_TE1 + k: v for k, v in clip(pipe.text_encoder).items()})
        state.update({_SDXL_TE2 + k: v for k, v in _openclip(pipe.text_encoder_2.state_dict()).items()})
    else:
        state.update({_SD15_TE + k: v for k, v in clip(pipe.text_encoder).items()})
    return {k: v.detach().contiguous() for k, v in state.items()}
