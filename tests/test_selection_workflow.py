"""Selection inside the real workflow: your own images (folder source) go through scoring,
selection and captioning; the reference never reaches the dataset; an overrides edit reruns
select and what follows, nothing before."""

import csv
import hashlib
import json

import pytest
from PIL import Image

from constructed import figure, lightly_edited, with_text
from conftest import TEST_CONFIG

pytestmark = pytest.mark.workflow

FOLDER_CONFIG = """\
generate:
  backend: folder
  folder: characters/{character}/own
select:
  count: 3
"""


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_own_images_are_selected_and_the_reference_never_reaches_the_dataset(fresh):
    own = fresh.path("characters/mira/own")
    own.mkdir()
    for i in range(4):
        figure(i, size=64).save(own / f"render{i}.png")
    reference = fresh.path("characters/mira/reference.png")
    (own / "reference_copy.png").write_bytes(reference.read_bytes())
    with Image.open(reference) as ref:
        lightly_edited(ref.convert("RGB"), size=64).save(own / "reference_edited.png")
    with_text(figure(50, size=64, scale=0.75)).save(own / "watermarked.png")
    fresh.path("config/folder.yaml").write_text(FOLDER_CONFIG)
    files = (*TEST_CONFIG, "config/folder.yaml")
    # Up to the dataset and its manifest: training on a new selection is the train tests' business.
    targets = ("results/mira/dataset", "results/mira/dataset_manifest.json")
    fresh.snakemake(*targets, configfiles=files)

    base = fresh.path("results/mira")
    plan = json.loads((base / "plan.json").read_text())
    key_of = {shot["source_file"].rsplit("/", 1)[-1]: shot["key"] for shot in plan["shots"]}
    assert len(key_of) == 7
    rows = {r.split("\t")[0]: r.split("\t") for r in (base / "selection.tsv").read_text().splitlines()[1:]}
    reason = {name: rows[key][2] for name, key in key_of.items()}
    selected = {name for name, key in key_of.items() if rows[key][1] == "yes"}
    assert reason["reference_copy.png"].startswith("near-copy of reference")
    assert reason["reference_edited.png"].startswith("near-copy of reference")
    assert reason["watermarked.png"].startswith("burnt-in text or watermark")
    assert len(selected) == 3 and selected <= {f"render{i}.png" for i in range(4)}

    dataset_files = [p for p in base.joinpath("dataset").rglob("*.png")]
    assert len(dataset_files) == 3
    assert sha(reference) not in {sha(p) for p in dataset_files}
    manifest = json.loads((base / "dataset_manifest.json").read_text())
    assert sorted(m["key"] for m in manifest["images"]) == sorted(key_of[n] for n in selected)
    for m in manifest["images"]:
        assert m["source"] == "folder" and m["backend"] == "folder" and m["origin"].endswith(".png")
        assert m["size"] == [64, 64] and m["created"] and m["scores"]["figures"] == 1
    assert base.joinpath("selection.png").stat().st_size > 0

    # Overrides: swap one selected render for the one left out; ask for the reference copy too.
    left_out = ({f"render{i}.png" for i in range(4)} - selected).pop()
    dropped = sorted(selected)[0]
    fresh.path("characters/mira/overrides.yaml").write_text(
        f"include: [{key_of[left_out]}, {key_of['reference_copy.png']}]\nexclude: [{key_of[dropped]}]\n")
    fresh.path("config/overrides.yaml").write_text(
        "characters:\n  mira:\n    overrides: characters/mira/overrides.yaml\n")
    run = fresh.snakemake(*targets, configfiles=(*files, "config/overrides.yaml"))
    jobs = fresh.jobs(run)
    assert jobs["select"] == 1 and jobs["caption"] == 1 and jobs["dataset"] == 1, jobs
    assert not any(jobs[r] for r in ("analyze", "plan", "generate", "score", "embed", "embed_reference")), jobs
    rows = {r.split("\t")[0]: r.split("\t") for r in (base / "selection.tsv").read_text().splitlines()[1:]}
    assert rows[key_of[left_out]][1] == "yes" and rows[key_of[dropped]][1] == "no"
    assert rows[key_of[dropped]][2].startswith("excluded by overrides file")
    assert rows[key_of["reference_copy.png"]][1] == "no"
    assert "force-include refused" in rows[key_of["reference_copy.png"]][2]
    assert sha(reference) not in {sha(p) for p in base.joinpath("dataset").rglob("*.png")}


def test_a_folder_with_broken_and_identical_files_selects_and_too_few_stops_before_captions(fresh, no_torch_hook):
    """No file stops the run: broken ones become rejected candidates naming their file; identical
    files are one candidate; below select.min_count the run stops before captioning, saying how
    many passed and why the rest failed."""
    from drawn import Pose, draw
    from labelled import bomb_header

    own = fresh.path("characters/mira/own")
    own.mkdir()
    for i, pose in enumerate([Pose(), Pose("three-quarter view left", "waving", framing="upper body"),
                              Pose("from behind", "hands on hips", framing="cowboy shot")]):
        draw(pose, 96).save(own / f"good{i}.png")
    (own / "good0_copy.png").write_bytes((own / "good0.png").read_bytes())
    (own / "truncated.png").write_bytes((own / "good1.png").read_bytes()[:300])
    (own / "notes.png").write_text("not a picture")
    (own / "bomb.png").write_bytes(bomb_header())
    fresh.path("config/folder.yaml").write_text(FOLDER_CONFIG)
    files = (*TEST_CONFIG, "config/folder.yaml")
    fresh.snakemake("results/mira/selection.tsv", configfiles=files)

    base = fresh.path("results/mira")
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(base / "selection.tsv"), delimiter="\t")}
    assert sorted(rows) == ["bomb.png", "good0.png", "good1.png", "good2.png", "notes.png", "truncated.png"]
    assert rows["good0.png"]["copies"].endswith("good0_copy.png")
    for name in ("bomb.png", "notes.png", "truncated.png"):
        assert rows[name]["selected"] == "no" and rows[name]["reason"].startswith(f"unreadable file characters/mira/own/{name}")
    assert all(rows[f"good{i}.png"]["selected"] == "yes" for i in range(3))
    assert all(rows[f"good{i}.png"]["observed"] for i in range(3)), "folder images are tagged before selection"
    summary = json.loads((base / "selection_summary.json").read_text())
    assert summary["rejected"] == {"unreadable": 3, "identical copy": 1} and summary["selected"] == 3

    fresh.path("config/strict.yaml").write_text("select:\n  count: 5\n  min_count: 4\n")
    # the selection is a target, as in rule all: a changed select setting reruns it
    # (and select stays light: it runs where importing torch fails)
    run = fresh.snakemake("results/mira/selection.tsv", "results/mira/dataset",
                          configfiles=(*files, "config/strict.yaml"), check=False,
                          env={"PYTHONPATH": str(no_torch_hook)})
    assert run.returncode != 0
    assert "only 3 of 6 candidates of mira passed every check, fewer than select.min_count = 4" in run.output
    assert "unreadable: 3" in run.output and "identical copy: 1" in run.output
    assert not fresh.jobs(run)["dataset"] and not base.joinpath("dataset").exists(), "nothing is trained on too few"
    assert base.joinpath("selection.too_few.tsv").exists() and base.joinpath("selection.too_few.png").exists()
