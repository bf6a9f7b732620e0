"""Evaluation on the demo: metrics per checkpoint, the delivered epoch, the report, the model card, the CLI."""

from __future__ import annotations

import base64
import html
import json
import math
import re

import pytest
import yaml
from click.testing import CliRunner

from synthlora.cli import main as cli
from synthlora.evaluate import METRICS, read_tsv
from conftest import TEST_CONFIG
from training_paths import evaluation, training

pytestmark = pytest.mark.workflow

RUNS = ["base", "000001", "000002"]  # config/test.yaml: 2 epochs, each saved


def metrics_rows(wf, configfiles=TEST_CONFIG):
    return read_tsv(evaluation(wf, configfiles) / "metrics.tsv")


def test_every_checkpoint_has_finite_metrics_for_every_test_image(finished):
    rows = metrics_rows(finished)
    assert [r["run"] for r in rows] == RUNS
    for r in rows:
        for m in (*METRICS, "combined"):
            assert math.isfinite(float(r[m])), (r["run"], m, r[m])
    for run in RUNS:  # eval/base/ serves every training; an epoch's run is eval/<fingerprint>/<epoch>/
        folder = finished.path("results/mira/eval/base") if run == "base" else evaluation(finished) / run
        per_image = json.loads((folder / "metrics.json").read_text())["images"]
        assert sorted(i["suite"] for i in per_image) == ["consistency", "context", "flexibility"]
        assert all(math.isfinite(i[m]) for i in per_image for m in ("identity_dataset", "prompt_adherence"))
        assert (folder / "contact_sheet.png").read_bytes()[:4] == b"\x89PNG"
    assert rows[1]["step"] == "3" and rows[2]["step"] == "6"


def test_the_best_epoch_by_the_configured_rule_is_delivered_and_the_others_kept(finished):
    epochs = [r for r in metrics_rows(finished) if r["run"] != "base"]
    top = max(float(r["combined"]) for r in epochs)
    expected = min(int(r["epoch"]) for r in epochs if float(r["combined"]) == top)  # ties: earlier epoch
    best = json.loads((evaluation(finished) / "best.json").read_text())
    assert best["epoch"] == expected and best["best_by"] == "combined"
    assert [r["epoch"] for r in epochs if r["best"] == "yes"] == [str(expected)]
    epochs_dir = training(finished) / "epochs"
    delivered = finished.path("results/mira/lora/mira.safetensors")
    assert delivered.read_bytes() == (epochs_dir / f"mira-{expected:06d}.safetensors").read_bytes()
    assert delivered.stat().st_ino != (epochs_dir / f"mira-{expected:06d}.safetensors").stat().st_ino  # a copy
    assert sorted(p.name for p in epochs_dir.glob("*.safetensors")) == \
        ["mira-000001.safetensors", "mira-000002.safetensors"]


def test_a_new_best_rule_redelivers_without_rendering_or_measuring_again(project):
    sheet = evaluation(project) / "000001" / "images"
    before = {p.name: p.stat().st_mtime_ns for p in sheet.iterdir()}
    # Lowest sharpness wins nothing here: pick by sharpness (highest), a rule the combined score may disagree with.
    project.path("config/pick.yaml").write_text("evaluate:\n  best_by: sharpness\n")
    run = project.snakemake(configfiles=(*TEST_CONFIG, "config/pick.yaml"))
    jobs = project.jobs(run)
    assert jobs["evaluate"] == 0 and jobs["eval_metrics"] == 0 and jobs["train"] == 0, jobs
    assert jobs["eval_summary"] == 1 and jobs["model_card"] == 1, jobs
    epochs = [r for r in metrics_rows(project) if r["run"] != "base"]
    top = max(float(r["sharpness"]) for r in epochs)
    expected = min(int(r["epoch"]) for r in epochs if float(r["sharpness"]) == top)
    delivered = project.path("results/mira/lora/mira.safetensors")
    assert delivered.read_bytes() == (training(project) / f"epochs/mira-{expected:06d}.safetensors").read_bytes()
    assert {p.name: p.stat().st_mtime_ns for p in sheet.iterdir()} == before
    assert f"= epoch {expected} of 2" in project.path("results/mira/MODEL_CARD.md").read_text()


def _report(wf, tmp_path):
    out = tmp_path / "report.html"
    wf.snakemake("--report", str(out))
    html = out.read_text()
    results = json.loads(re.search(r"var results = (\{.*?\});\n", html, re.S).group(1))
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html, re.S).group(1))
    return results, categories


def _data(entry) -> str:
    return base64.b64decode(entry["data_uri"].split("base64,", 1)[1]).decode()


def _rows(page: str) -> list[list[str]]:
    """The cells of an HTML table page, unescaped."""
    return [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)]
            for tr in re.findall(r"<tr>(.*?)</tr>", page, re.S)]


def test_the_report_shows_every_category_with_its_tables_card_and_pictures_inline(finished, tmp_path):
    results, categories = _report(finished, tmp_path)
    assert {"Selection", "Dataset", "Training", "Evaluation", "Provenance", "Model card"} <= set(categories)
    by_name = {e["filename"]: e for e in results.values()}
    # everything the report lists renders in the page: no download-only TSV or Markdown
    assert not {n for n in by_name if n.endswith((".tsv", ".md"))}, sorted(by_name)
    pages = {n: _data(by_name[n]) for n in ("metrics.html", "selection.html", "provenance.html", "MODEL_CARD.html")}
    assert all(by_name[n]["mime_type"] == "text/html" for n in pages)
    metrics = _rows(pages["metrics.html"])
    assert metrics[0][:4] == ["run", "epoch", "step", "identity_dataset"] and len(metrics) == 4
    assert metrics == [r.split("\t") for r in (evaluation(finished) / "metrics.tsv").read_text().splitlines()]
    selection = _rows(pages["selection.html"])
    assert selection[0][:3] == ["key", "selected", "reason"] and len(selection) == 9
    provenance = _rows(pages["provenance.html"])
    assert provenance[0][:2] == ["key", "source"] and len(provenance) == 7
    assert all(row[1] == "generated" for row in provenance[1:])
    card = pages["MODEL_CARD.html"]
    assert "<h2>Provenance</h2>" in card and "<h2>License</h2>" in card and "http" not in card
    assert len(re.findall(r'<img src="data:image/png;base64,', card)) == 3  # tag chart, metrics chart, contact sheet
    pictures = {"contact_sheet.png", "metrics_vs_epoch.png", "tag_frequency.png", "selection_sheet.png", "loss_curve.png"}
    assert pictures <= set(by_name)
    dataset = [path for paths in categories["Dataset"].values() for path in paths]
    assert sorted(results[p]["filename"] for p in dataset) == ["dataset.png", "tag_frequency.png"]
    sheets = [e for e in results.values() if e["filename"] == "contact_sheet.png"]
    assert sorted(e["labels"]["checkpoint"] for e in sheets) == sorted(RUNS)


def test_model_card_has_settings_tag_frequencies_metrics_provenance_and_license(finished):
    card = finished.path("results/mira/MODEL_CARD.md").read_text()
    for row in ("| Base model | resources/demo-models/sdxl |", "| Dataset size | 6 |", "| Resolution | 64x64 |",
                "| repeats | 1 |", "| epochs | 2 |", "| Network | LoRA (networks.lora), dim 4, alpha 2.0 |",
                "| mira_sl | 6 |", "    mira_sl : 0, 6"):
        assert row in card, row
    for run in RUNS:
        assert re.search(rf"^\| {run} \|", card, re.M), run
    assert "Demo run" in card
    assert "none is an artist-made image" in card and "never an input to any model" in card
    assert "No training image is byte-identical to the reference image." in card
    assert "## Responsibility" in card
    license_ = yaml.safe_load(finished.path("config/config.yaml").read_text())["model_card"]["license"]
    assert f"released under the {license_} license" in card


def test_light_evaluation_rules_never_import_torch(project, no_torch_hook):
    hook = no_torch_hook
    rules = ("eval_summary", "eval_sheet", "report_pictures", "model_card", "deliver_lora")
    run = project.snakemake("--forcerun", *rules, env={"PYTHONPATH": str(hook)})
    assert set(project.jobs(run)) == set(rules), project.jobs(run)


def test_cli_show_prints_plan_selection_and_metrics(finished):
    res = CliRunner().invoke(cli, ["show", "mira", "--root", str(finished.root)])
    assert res.exit_code == 0, res.output
    assert "plan (8 shots)" in res.output and "selection (6 of 8 selected)" in res.output
    best = json.loads((evaluation(finished) / "best.json").read_text())["epoch"]
    assert f"= epoch {best}" in res.output
    assert re.search(r"^000002\s+6\s", res.output, re.M)


def test_cli_new_scaffolds_a_character_that_check_accepts(fresh):
    runner = CliRunner()
    ref = fresh.path("characters/mira/reference.png")
    res = runner.invoke(cli, ["new", "ada", "--reference", str(ref), "--description", "Ada, a robot with a red visor.",
                              "--trigger", "ada_sl", "--config", "config/ada.yaml", "--root", str(fresh.root)])
    assert res.exit_code == 0, res.output
    cfg = yaml.safe_load(fresh.path("config/ada.yaml").read_text())
    assert cfg["characters"]["ada"]["trigger"] == "ada_sl"
    assert json.loads(fresh.path("characters/ada/features.json").read_text())["object"]
    assert runner.invoke(cli, ["new", "ada", "--reference", str(ref), "--description", "x", "--trigger", "t",
                               "--config", "config/ada.yaml", "--root", str(fresh.root)]).exit_code != 0
    res = runner.invoke(cli, ["check", "--root", str(fresh.root), "--configfile", "config/config.yaml", "--configfile", "config/test.yaml",
                              "--configfile", "config/ada.yaml"])
    assert res.exit_code == 0, res.output
    assert re.search(r"characters, references, feature schemas\s+ok\s+mira, ada", res.output)
    # the new character's config makes a valid workflow: snakemake plans it without running anything
    dry = fresh.snakemake("-n", "results/ada/plan.json", configfiles=(*TEST_CONFIG, "config/ada.yaml"))
    assert fresh.jobs(dry)["plan"] == 1


def test_cli_check_fails_on_a_misspelt_key_and_a_missing_reference(fresh):
    fresh.path("config/bad.yaml").write_text("evaluate:\n  best_bye: combined\n")
    res = CliRunner().invoke(cli, ["check", "--root", str(fresh.root), "--configfile", "config/bad.yaml"])
    assert res.exit_code != 0 and "best_bye" in res.output
    fresh.path("config/bad.yaml").write_text("characters:\n  mira:\n    reference: characters/mira/nope.png\n")
    res = CliRunner().invoke(cli, ["check", "--root", str(fresh.root), "--configfile", "config/config.yaml",
                                   "--configfile", "config/bad.yaml"])
    assert res.exit_code != 0 and "nope.png" in res.output and "FAIL" in res.output
