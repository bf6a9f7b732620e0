rule evaluate:
    """Render the test-prompt suites with one saved epoch's LoRA (run <fingerprint>/<epoch>), or
    without one (run 'base', shared by every training)."""
    input:
        unpack(evaluate_input),
    output:
        images=directory("results/{character}/eval/{run}/images"),
        outputs="results/{character}/eval/{run}/outputs.json",
    log:
        "logs/{character}/evaluate/{run}.log",
    benchmark:
        "benchmarks/{character}/evaluate/{run}.tsv"
    params:
        suite=eval_items,
        settings=eval_render_settings,
        checkpoint=eval_checkpoint,
    threads: 1
    resources:
        mem_mb=12000,
        runtime=30,
        gpu=gpus("evaluate"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/evaluate.py"


rule eval_metrics:
    """Measure one run's test images: identity to dataset and reference, prompt adherence, failures."""
    input:
        unpack(eval_metrics_input),
    output:
        "results/{character}/eval/{run}/metrics.json",
    log:
        "logs/{character}/eval_metrics/{run}.log",
    params:
        settings=eval_metrics_settings,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
        gpu=gpus("evaluate"),
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/eval_metrics.py"


rule eval_summary:
    """One metrics row per checkpoint (and the baseline), the combined score, and the best epoch."""
    input:
        unpack(eval_summary_input),
    output:
        # update(): a failing job (a new rule, new weights) keeps the last good table and choice
        table=update("results/{character}/eval/{fingerprint}/metrics.tsv"),
        best=update("results/{character}/eval/{fingerprint}/best.json"),
        page=update(report("results/{character}/eval/{fingerprint}/metrics.html", category="Evaluation",
                           caption="../report/metrics.rst")),
    log:
        "logs/{character}/eval_summary/{fingerprint}.log",
    params:
        weights=config["evaluate"]["weights"],
        best_by=config["evaluate"]["best_by"],
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/eval_summary.py"


rule eval_sheet:
    """Contact sheet of one checkpoint: a row per test prompt, baseline and LoRA side by side."""
    input:
        unpack(eval_sheet_input),
    output:
        report("results/{character}/eval/{run}/contact_sheet.png", category="Evaluation",
               subcategory="Contact sheets", caption="../report/contact_sheet.rst",
               labels=lambda w: {"character": w.character, "checkpoint": w.run.split("/")[-1]}),
    log:
        "logs/{character}/eval_sheet/{run}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/eval_sheet.py"


rule report_pictures:
    """Charts of the run: tag frequencies, selection contact sheet, loss curve, metrics per epoch."""
    input:
        unpack(report_pictures_input),
    output:
        tag_frequency=update(report("results/{character}/report/tag_frequency.png", category="Dataset",
                                    caption="../report/tag_frequency.rst")),
        selection_sheet=update(report("results/{character}/report/selection_sheet.png", category="Selection",
                                      caption="../report/selection_sheet.rst")),
        loss_curve=update(report("results/{character}/report/loss_curve.png", category="Training",
                                 caption="../report/loss_curve.rst")),
        metrics_vs_epoch=update(report("results/{character}/report/metrics_vs_epoch.png", category="Evaluation",
                                       caption="../report/metrics_vs_epoch.rst")),
    log:
        "logs/{character}/report_pictures.log",
    params:
        trigger=lambda w: character(w)["trigger"],
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/report_pictures.py"


rule model_card:
    """MODEL_CARD.md (settings, tag frequencies, metrics per epoch, provenance, license) and provenance.tsv,
    each with an HTML twin that the report shows inline (the card's pictures embedded)."""
    input:
        unpack(model_card_input),
        lora="results/{character}/lora/{character}.safetensors",
        api_usage="results/{character}/api_usage.json",
        # pictures the HTML card embeds (the delivered epoch's contact sheet is picked from best.json)
        tag_frequency_chart="results/{character}/report/tag_frequency.png",
        metrics_chart="results/{character}/report/metrics_vs_epoch.png",
    output:
        card=update("results/{character}/MODEL_CARD.md"),
        provenance=update("results/{character}/provenance.tsv"),
        card_page=update(report("results/{character}/MODEL_CARD.html", category="Model card",
                                caption="../report/model_card.rst")),
        provenance_page=update(report("results/{character}/provenance.html", category="Provenance",
                                      caption="../report/provenance.rst")),
    log:
        "logs/{character}/model_card.log",
    params:
        character=lambda w: {"name": w.character, **character(w)},
        config=lambda w: {k: config[k] for k in ("analyze", "generate", "caption", "train", "evaluate", "model_card", "plan")},
        demo_models_dir=DEMO,
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        "../envs/pipeline.yaml"
    script:
        "../scripts/model_card.py"
