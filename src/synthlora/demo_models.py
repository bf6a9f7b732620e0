"""Tiny random-weight models of the real architectures, for offline runs on a CPU.

The default config points every model-backed stage at these directories. They are saved with
``save_pretrained`` and loaded back by the same ``from_pretrained`` code a real model id or
path takes, so the demo exercises the real loading, generation, training and scoring paths.
The SDXL and SD1.5 pipelines are also written as single-file checkpoints in the original key
layout (config/examples/single-file.yaml runs on those).
Their outputs are meaningless pictures and gibberish text; the report says so.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from synthlora.io import atomic_dir

def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _clip_vocab() -> dict[str, int]:
    """Byte-level CLIP vocabulary: no download, no merges (FIELD-NOTES)."""
    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab


def _clip_tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.json"
    merges_file = directory / "merges.txt"
    vocab_file.write_text(json.dumps(_clip_vocab()))
    merges_file.write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
    return tok


def build_sdxl(out: Path, seed: int = 0) -> None:
    """An SDXL-shaped diffusers pipeline (SDXL's UNet block layout, two CLIP text encoders)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    tmp_tok = out.parent / (out.name + ".tok")
    tokenizer = _clip_tokenizer(tmp_tok)
    vocab_size = len(tokenizer)
    ids = dict(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    te1 = CLIPTextModel(
        CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, vocab_size=vocab_size, projection_dim=32, **ids)
    )
    # wider than te1, as in SDXL (768 / 1280): a single-file loader tells the two encoders apart by width
    te2 = CLIPTextModelWithProjection(
        CLIPTextConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                       num_attention_heads=2, vocab_size=vocab_size, projection_dim=32, **ids)
    )
    addition_time_embed_dim = 8
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 64),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),
        attention_head_dim=(2, 4, 4),
        norm_num_groups=32,
        cross_attention_dim=80,  # te1 hidden + te2 hidden
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=addition_time_embed_dim,
        projection_class_embeddings_input_dim=6 * addition_time_embed_dim + 32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        scaling_factor=0.13025,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        num_train_timesteps=1000, timestep_spacing="leading", steps_offset=1,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(out)
    shutil.rmtree(tmp_tok, ignore_errors=True)


def build_sd15(out: Path, seed: int = 0) -> None:
    """An SD1.5-shaped diffusers pipeline: SD1.5's UNet block layout (4 levels, 1x1-conv proj_in /
    proj_out, one transformer per attention), one CLIP text encoder, no safety checker."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tmp_tok = out.parent / (out.name + ".tok")
    tokenizer = _clip_tokenizer(tmp_tok)
    te = CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4,
        block_out_channels=(32, 32, 64, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8, norm_num_groups=32, cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16),
        latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64, scaling_factor=0.18215,
    )
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)
    shutil.rmtree(tmp_tok, ignore_errors=True)


def _byte_bpe_tokenizer(directory: Path):
    """A byte-level BPE trained in milliseconds, with an <image> token and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "a character with long hair, a red scarf and boots, standing, smiling, full body",
        '{"description": "", "object": [{"name": "", "description": "", "position": ""}]}',
        "front view side view back view close-up upper body cowboy shot white background",
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?-_()[]{}'\"",
    ] * 20
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<pad>", "<s>", "</s>", "<image>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    fast.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
        "{% endif %}</s>\n{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    return fast


def build_vlm(out: Path, seed: int = 0) -> None:
    """A Llava-architecture vision-language model (tiny Llama + tiny CLIP vision tower)."""
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    torch.manual_seed(seed)
    tokenizer = _byte_bpe_tokenizer(out)
    image_size, patch = 32, 8
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=image_size, patch_size=patch)
    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=len(tokenizer),
                       max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default",
                         image_seq_length=(image_size // patch) ** 2)
    model = LlavaForConditionalGeneration(config)
    image_processor = CLIPImageProcessor(size={"shortest_edge": image_size},
                                         crop_size={"height": image_size, "width": image_size})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=patch, vision_feature_select_strategy="default",
                               chat_template=tokenizer.chat_template, num_additional_image_tokens=1)
    model.save_pretrained(out)
    processor.save_pretrained(out)


def build_embedder(out: Path, seed: int = 0) -> None:
    """A CLIP image/text embedding model (used for identity and prompt adherence)."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTextConfig,
        CLIPVisionConfig,
    )

    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer(out)
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    config = CLIPConfig(
        text_config=CLIPTextConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, vocab_size=len(tokenizer), **ids).to_dict(),
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=32, patch_size=8).to_dict(),
        projection_dim=32,
    )
    model = CLIPModel(config)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)


BUILDERS = {"sdxl": build_sdxl, "sd15": build_sd15, "vlm": build_vlm, "embedder": build_embedder}

# The demo's SDXL and SD1.5 again as users hold real bases: one checkpoint file in the original
# (sgm / ldm) key layout, plus a weightless components folder (configs and tokenizers) that
# single_file.<family>_components names, as it would name a real base's diffusers folder.
SINGLE_FILES = {"sdxl": "sdxl.safetensors", "sd15": "sd15.safetensors"}
COMPONENTS = {"sdxl": "sdxl-components", "sd15": "sd15-components"}


def write_single_file(pipeline_dir: str | Path, checkpoint: str | Path, components: str | Path, family: str) -> None:
    """The diffusers pipeline in ``pipeline_dir`` as one original-layout ``.safetensors`` file, and its
    configs and tokenizers (no weights) copied to ``components``."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
    from safetensors.torch import save_file

    from synthlora.io import atomic_path
    from synthlora.single_file import original_state_dict

    pipeline_dir = Path(pipeline_dir)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(pipeline_dir, **({"safety_checker": None} if family == "sd15" else {}))
    with atomic_path(checkpoint) as tmp:
        save_file(original_state_dict(pipe, family), str(tmp), metadata={"format": "pt"})
    with atomic_dir(components) as tmp:
        for f in pipeline_dir.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".txt"):
                (tmp / f.relative_to(pipeline_dir)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, tmp / f.relative_to(pipeline_dir))


def build_demo_models(root: str | Path, seed: int = 0) -> None:
    """Build every demo model under ``root/<name>``; each directory appears whole or not at all."""
    root = Path(root)
    for name, builder in BUILDERS.items():
        with atomic_dir(root / name) as tmp:
            builder(tmp, seed=seed)
    for family, name in SINGLE_FILES.items():
        write_single_file(root / family, root / name, root / COMPONENTS[family], family)
