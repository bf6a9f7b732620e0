# Several characters (synthlora.groups). A group runs through the same plan, generate, score, select,
# caption and dataset rules as a character (results/<group>/); the rules here make what a group has
# no analysis or reference of its own for, and what a multi-concept LoRA (results/<lora>/) gathers
# from its members. Each is preferred over the single-character rule for the same file.

ruleorder: group_features > analyze
ruleorder: group_reference > reference
ruleorder: lora_selection > select
ruleorder: lora_dataset > dataset
ruleorder: lora_model_card > model_card


rule group_features:
    """A group's features: every member's, by name (what its plan and shots are made of)."""
    input:
        lambda w: [f"results/{m}/features.json" for m in groups_of(config)[w.character]],
    output:
        "results/{character}/features.json",
    log:
        "logs/{character}/group_features.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in GROUPS) or "(?!)",
    params:
        members=lambda w: groups_of(config)[w.character],
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/group_features.py"


rule group_reference:
    """A group's or LoRA's reference: its characters' references side by side (the near-copy guard
    and the evaluation compare with it; it never enters a dataset)."""
    input:
        member_references,
    output:
        "results/{character}/reference.png",
    log:
        "logs/{character}/group_reference.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in [*GROUPS, *LORAS]) or "(?!)",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/group_reference.py"


rule lora_selection:
    """A multi-concept LoRA's selection: its members' tables, one after the other."""
    input:
        lambda w: [checkpoints.select.get(character=m).output[0] for m in loras_of(config)[w.character]["members"]],
    output:
        "results/{character}/selection.tsv",
    log:
        "logs/{character}/lora_selection.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in LORAS) or "(?!)",
    threads: 1
    resources:
        mem_mb=200,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/lora_selection.py"


rule lora_dataset:
    """A multi-concept LoRA's dataset: each member's images and captions copied into its own subset
    folder ({repeats}_{trigger} for a character, {repeats}_{group} for a group)."""
    input:
        unpack(lora_dataset_input),
    output:
        dataset=update(directory("results/{character}/dataset")),
        tag_frequency=update("results/{character}/tag_frequency.json"),
    log:
        "logs/{character}/lora_dataset.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in LORAS) or "(?!)",
    params:
        members=lambda w: loras_of(config)[w.character]["members"],
        subsets=lora_subsets,
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/lora_dataset.py"


rule trigger_metrics:
    """Per trigger of a multi-concept LoRA's run: similarity of each prompt's renders to each
    character's training images (own identity, and leakage into the others)."""
    input:
        unpack(trigger_metrics_input),
    output:
        "results/{character}/eval/{run}/triggers.json",
    log:
        "logs/{character}/trigger_metrics/{run}.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in LORAS) or "(?!)",
    params:
        characters=lambda w: characters_in(config, w.character),
        members_of=lambda w: {m: characters_in(config, m) for m in loras_of(config)[w.character]["members"]},
        embedder=config["evaluate"]["embedder"],
        dtype=config["evaluate"]["dtype"],
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
        gpu=gpus("evaluate"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/trigger_metrics.py"


rule lora_model_card:
    """A multi-concept LoRA's card: its members and triggers, subsets, training, and the
    evaluation per trigger (each alone, groups together, leakage)."""
    input:
        unpack(lora_card_input),
    output:
        update("results/{character}/MODEL_CARD.md"),
    log:
        "logs/{character}/lora_model_card.log",
    wildcard_constraints:
        character="|".join(re.escape(g) for g in LORAS) or "(?!)",
    params:
        members=lambda w: {m: subject_trigger(config, m) for m in loras_of(config)[w.character]["members"]},
        backend=config["train"]["backend"],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/lora_model_card.py"
