"""Selection inside the real workflow: your own images (folder source) go through scoring,
selection and captioning; the reference never reaches the dataset; an overrides edit reruns
select and what follows, nothing before."""

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
    target = "results/mira/dataset_manifest.json"
    fresh.snakemake(target, configfiles=files)

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
    run = fresh.snakemake(target, configfiles=(*files, "config/overrides.yaml"))
    jobs = fresh.jobs(run)
    assert jobs["select"] == 1 and jobs["caption"] == 1 and jobs["dataset"] == 1, jobs
    assert not any(jobs[r] for r in ("analyze", "plan", "generate", "score", "embed", "embed_reference")), jobs
    rows = {r.split("\t")[0]: r.split("\t") for r in (base / "selection.tsv").read_text().splitlines()[1:]}
    assert rows[key_of[left_out]][1] == "yes" and rows[key_of[dropped]][1] == "no"
    assert rows[key_of[dropped]][2].startswith("excluded by overrides file")
    assert rows[key_of["reference_copy.png"]][1] == "no"
    assert "force-include refused" in rows[key_of["reference_copy.png"]][2]
    assert sha(reference) not in {sha(p) for p in base.joinpath("dataset").rglob("*.png")}
