import pytest

from synthlora.kohya import KohyaConfigError, dataset_toml, train_toml, validate_dataset, validate_train
from synthlora.lora_format import kohya_text_key, kohya_unet_key, sdxl_unet_name

TRAIN = {"backend": "builtin", "base_model": "m", "resolution": 1024, "num_repeats": 10, "batch_size": 1,
         "max_train_epochs": 10, "network_dim": 8, "network_alpha": 4.0, "unet_lr": 4e-4,
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
