import pytest

from synthlora.kohya import KohyaConfigError, dataset_toml, train_toml, validate_dataset, validate_train
from synthlora.lora_format import kohya_text_key, kohya_unet_key, sdxl_unet_name
from conftest import TEST_CONFIG

TRAIN = {"backend": "builtin", "base_model": "m", "resolution": 1024, "num_repeats": 10, "batch_size": 1,
         "max_train_epochs": 10, "save_every_n_epochs": 1, "network_dim": 8, "network_alpha": 4.0, "unet_lr": 4e-4,
         "text_encoder_lr": 8e-5, "optimizer_type": "AdamW", "lr_scheduler": "constant", "lr_warmup_steps": 0,
         "seed": 1, "mixed_precision": "bf16", "gradient_checkpointing": True}


def test_generated_tomls_validate_with_seed_values():
    ds = validate_dataset(dataset_toml(TRAIN, "results/x/dataset", "x_tr"))
    assert ds["datasets"][0]["subsets"][0]["image_dir"] == "results/x/dataset/10_x_tr"
    assert ds["general"]["caption_extension"] == ".txt"
    flat = validate_train(train_toml(TRAIN, "x", "results/x/lora"))
    assert flat["max_train_epochs"] == 10 and flat["network_dim"] == 8
    assert flat["text_encoder_lr"] == [8e-5, 8e-5] and flat["network_train_unet_only"] is False


def test_unknown_training_key_is_named():
    doc = train_toml(TRAIN, "x", "out")
    doc["network"]["network_rank"] = 16  # sd-scripts would train with dim 4 without a word
    with pytest.raises(KohyaConfigError, match="network_rank"):
        validate_train(doc)


def test_int_where_float_is_required():
    doc = train_toml(TRAIN, "x", "out")
    doc["network"]["network_alpha"] = 4
    with pytest.raises(KohyaConfigError, match="network_alpha.*float"):
        validate_train(doc)


def test_dataset_rejects_unknown_keys_at_every_level():
    ds = dataset_toml(TRAIN, "d", "t")
    ds["datasets"][0]["subsets"][0]["repeats"] = 3
    with pytest.raises(KohyaConfigError, match="'repeats'"):
        validate_dataset(ds)


def test_builtin_trainer_refuses_keys_it_does_not_implement(tmp_path):
    import tomli_w

    from synthlora.train import load_training_config

    doc = train_toml(TRAIN, "x", "out")
    doc["network"]["network_args"] = ["conv_dim=4"]  # LoCon: sd-scripts only
    (tmp_path / "train.toml").write_text(tomli_w.dumps(doc))
    (tmp_path / "dataset.toml").write_text(tomli_w.dumps(dataset_toml(TRAIN, "d", "t")))
    with pytest.raises(KohyaConfigError, match="network_args"):
        load_training_config(tmp_path / "train.toml", tmp_path / "dataset.toml")


def test_sgm_names_follow_sd_scripts():
    assert sdxl_unet_name("down_blocks.1.attentions.0.proj_in") == "input_blocks.4.1.proj_in"
    assert sdxl_unet_name("down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k") == \
        "input_blocks.8.1.transformer_blocks.9.attn2.to_k"
    assert sdxl_unet_name("mid_block.attentions.0.transformer_blocks.0.ff.net.2") == \
        "middle_block.1.transformer_blocks.0.ff.net.2"
    assert sdxl_unet_name("up_blocks.0.attentions.2.proj_out") == "output_blocks.2.1.proj_out"
    assert sdxl_unet_name("up_blocks.1.attentions.0.proj_out") == "output_blocks.3.1.proj_out"
    assert kohya_unet_key("up_blocks.1.attentions.0.proj_out", "sdxl") == "lora_unet_output_blocks_3_1_proj_out"
    # transformers 5 drops `text_model.` from CLIPTextModel module names; consumers need it
    assert kohya_text_key("encoder.layers.3.self_attn.q_proj", 1, "sdxl") == \
        "lora_te1_text_model_encoder_layers_3_self_attn_q_proj"
    assert kohya_text_key("text_model.encoder.layers.3.mlp.fc1", 2, "sdxl") == \
        "lora_te2_text_model_encoder_layers_3_mlp_fc1"


FULL = {**TRAIN, "family": "sd15", "network_args": ["conv_dim=4", "conv_alpha=1"], "optimizer_type": "Prodigy",
        "optimizer_args": ["weight_decay=0.01", "betas=(0.9,0.99)"], "lr_scheduler": "cosine", "lr_warmup_steps": 50,
        "noise_offset": 0.0357, "min_snr_gamma": 5.0, "keep_tokens": 1, "shuffle_caption": True,
        "caption_dropout_rate": 0.05, "enable_bucket": True, "min_bucket_reso": 512, "max_bucket_reso": 1536,
        "bucket_reso_steps": 64, "clip_skip": 2, "tokenizer_cache_dir": "resources/tok", "save_every_n_epochs": 2,
        "sample_prompts": ["x_tr, smiling"], "sdpa": True, "cache_latents": True}


def test_every_tuned_value_reaches_the_tomls_with_sd_scripts_types():
    flat = validate_train(train_toml(FULL, "x", "out", "p.txt"), family="sd15")
    assert flat["network_args"] == ["conv_dim=4", "conv_alpha=1"] and flat["optimizer_type"] == "Prodigy"
    assert flat["optimizer_args"] == ["weight_decay=0.01", "betas=(0.9,0.99)"]
    assert (flat["lr_scheduler"], flat["lr_warmup_steps"]) == ("cosine", 50)
    assert flat["noise_offset"] == 0.0357 and flat["min_snr_gamma"] == 5.0 and flat["clip_skip"] == 2
    assert flat["text_encoder_lr"] == [8e-5]  # one text encoder in SD1.5
    assert flat["save_every_n_epochs"] == 2 and flat["save_state"] is True
    assert flat["sample_prompts"] == "p.txt" and flat["sample_every_n_epochs"] == 2
    assert flat["tokenizer_cache_dir"] == "resources/tok" and flat["mixed_precision"] == "bf16"
    assert flat["gradient_checkpointing"] is True and flat["sdpa"] is True and flat["cache_latents"] is True
    ds = validate_dataset(dataset_toml(FULL, "d", "x_tr"), flat_train=flat)
    assert ds["general"] == {"caption_extension": ".txt", "shuffle_caption": True, "keep_tokens": 1,
                             "caption_dropout_rate": 0.05}
    assert {k: ds["datasets"][0][k] for k in ("enable_bucket", "min_bucket_reso", "max_bucket_reso", "bucket_reso_steps")} \
        == {"enable_bucket": True, "min_bucket_reso": 512, "max_bucket_reso": 1536, "bucket_reso_steps": 64}


@pytest.mark.parametrize("change, family, key", [
    ({"clip_skip": 2}, "sdxl", "clip_skip"),
    ({"lr_warmup_steps": 100}, "sdxl", "lr_warmup_steps"),
    ({"cache_text_encoder_outputs": True}, "sdxl", "cache_text_encoder_outputs"),  # with text_encoder_lr > 0
    ({"cache_text_encoder_outputs": True, "text_encoder_lr": 0.0, "shuffle_caption": True}, "sdxl", "shuffle_caption"),
    ({"enable_bucket": True, "bucket_reso_steps": 48}, "sdxl", "bucket_reso_steps"),
    ({"enable_bucket": True, "max_bucket_reso": 768}, "sdxl", "max_bucket_reso"),
    ({"optimizer_type": "Adamw"}, "sdxl", "optimizer_type"),
    ({"optimizer_args": ["weight_decay 0.1"]}, "sdxl", "optimizer_args"),
    ({"lr_scheduler": "adafactor"}, "sdxl", "adafactor"),
])
def test_known_incompatible_combinations_are_rejected_naming_the_key(change, family, key):
    from synthlora.kohya import validate_config

    with pytest.raises(KohyaConfigError, match=key):
        validate_config({**TRAIN, "family": family, **change})


def test_bad_training_value_stops_the_workflow_before_any_job(fresh, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  clip_skip: 2\n")  # SDXL: sd-scripts would ignore it without a word
    run = fresh.snakemake("-n", configfiles=(*TEST_CONFIG, str(bad)), check=False)
    assert run.returncode != 0 and "clip_skip" in run.output
    assert fresh.jobs(run) == {} and not fresh.path("results").exists()
