"""Bad input fails before any job runs, naming what is wrong, and nothing built is lost."""

from __future__ import annotations

import json
import zlib
import struct

import pytest
import yaml
from conftest import TEST_CONFIG

pytestmark = pytest.mark.workflow


def results_state(wf):
    return {str(p.relative_to(wf.root)): p.stat().st_mtime_ns
            for p in sorted(wf.root.glob("results/**/*")) if p.is_file()}


def fails_before_any_job(wf, *needles, configfiles=TEST_CONFIG):
    before = results_state(wf)
    proc = wf.snakemake(check=False, configfiles=configfiles)
    assert proc.returncode != 0
    for needle in needles:
        assert needle in proc.output, proc.output[-3000:]
    assert not wf.jobs(proc), "no job may start"
    assert results_state(wf) == before, "nothing already built may change"
    return proc


def set_character(wf, **changes):
    cfg = wf.path("config/bad.yaml")
    base = yaml.safe_load(wf.path("config/config.yaml").read_text())["characters"]["mira"]
    name = changes.pop("name", "mira")
    cfg.write_text(yaml.safe_dump({"characters": {name: {**base, **changes}}}))
    return (*TEST_CONFIG, "config/bad.yaml")


def test_missing_reference(project):
    files = set_character(project, reference="characters/mira/nope.png")
    fails_before_any_job(project, "characters.mira.reference", "nope.png", "does not exist", configfiles=files)


def test_corrupt_reference(project):
    project.path("characters/mira/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    files = set_character(project, reference="characters/mira/broken.png")
    fails_before_any_job(project, "broken.png", "cannot be decoded", configfiles=files)


def _png_header_only(width, height):
    """A tiny PNG file that claims enormous dimensions (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_enormous_reference_by_pixels(project):
    project.path("characters/mira/huge.png").write_bytes(_png_header_only(20000, 20000))
    files = set_character(project, reference="characters/mira/huge.png")
    fails_before_any_job(project, "huge.png", "max_reference_pixels", configfiles=files)


def test_enormous_reference_by_bytes(project):
    project.path("config/limits.yaml").write_text("limits:\n  max_reference_bytes: 1000\n")
    fails_before_any_job(project, "reference.png", "max_reference_bytes",
                         configfiles=(*TEST_CONFIG, "config/limits.yaml"))


def test_unknown_config_key_is_named(project):
    project.path("config/typo.yaml").write_text("select:\n  cuont: 10\n")
    fails_before_any_job(project, "'cuont'", "select", configfiles=(*TEST_CONFIG, "config/typo.yaml"))


def test_unknown_character_key_is_named(project):
    files = set_character(project, trigerr="x")
    fails_before_any_job(project, "'trigerr'", "characters.mira", configfiles=files)


def test_schema_that_is_not_json_schema(project):
    project.path("config/features.schema.json").write_text(json.dumps({"type": "objekt"}))
    fails_before_any_job(project, "features.schema.json", "not valid JSON Schema")


def test_schema_that_is_not_json(project):
    project.path("config/features.schema.json").write_text("{ description: oops")
    fails_before_any_job(project, "features.schema.json", "not valid JSON")


@pytest.mark.parametrize("name", ["mi/ra", "..", "mira chan"])
def test_unsafe_character_names(project, name):
    files = set_character(project, name=name)
    fails_before_any_job(project, repr(name), "letters, digits", configfiles=files)


def test_invalid_manual_features_fail_naming_the_violation(project):
    built = {k: v for k, v in results_state(project).items() if "/images/" in k or "/lora/" in k}
    last_good = project.path("results/mira/features.json").read_bytes()
    features = project.path("characters/mira/features.json")
    data = json.loads(features.read_text())
    del data["object"][0]["position"]
    features.write_text(json.dumps(data))
    proc = project.snakemake(check=False)
    assert proc.returncode != 0
    assert "'position' is a required property" in proc.output and "object/0" in proc.output
    assert project.jobs(proc) == {"analyze": 1}
    after = results_state(project)
    assert all(after.get(k) == v for k, v in built.items()), "images and LoRAs survive a failed analysis"
    # and the last good analysis itself: kept until a new one is complete (update() in rules/analyze.smk)
    assert project.path("results/mira/features.json").read_bytes() == last_good


@pytest.mark.parametrize("overlay, needles", [
    ("evaluate:\n  weights: {identiy_dataset: 1.0}\n",
     ["'identiy_dataset'", "evaluate.weights", "identity_dataset, identity_reference"]),
    ("plan:\n  poses: {'arms, crossed': standing with arms crossed}\n", ["'arms, crossed'", "plan.poses", "no commas"]),
    ("evaluate:\n  suites: {'my suite': ['{trigger}']}\n", ["'my suite'", "evaluate.suites", "letters, digits"]),
    ("select:\n  background_colors: {'black backdrop': [0, 0, 0]}\n",
     ["select.background_colors", "'black backdrop'", "plan.backgrounds"]),
])
def test_names_inside_maps_are_checked_at_start_up(project, overlay, needles):
    """Map-valued keys (metric weights, vocabularies, suites, background colours) fail before any job
    when a name is misspelt or unusable, naming the key and the choices, not after training."""
    project.path("config/maps.yaml").write_text(overlay)
    fails_before_any_job(project, *needles, configfiles=(*TEST_CONFIG, "config/maps.yaml"))


@pytest.mark.parametrize("trigger, needle", [("mira/sl", "'/'"), ("mira_sl ", "space"), ("mira\tsl", "control characters"),
                                             ("m" * 101, "longer than 100 bytes")])
def test_unusable_trigger_words_fail_at_start_up(project, trigger, needle):
    """A trigger names the dataset folder and starts every caption: one that cannot fails before any
    job, not in the dataset job after generation (deleting the last good dataset)."""
    files = set_character(project, trigger=trigger)
    fails_before_any_job(project, "characters.mira.trigger", needle, configfiles=files)


@pytest.mark.parametrize("text, needles", [
    ("include: [3f9c0a1b2c3d4e5f\n", ["overrides.yaml", "not valid YAML"]),
    ("inclde: [3f9c0a1b2c3d4e5f]\n", ["overrides.yaml", "'inclde'"]),
    ("exclude: [pretty-one]\n", ["overrides.yaml", "'pretty-one'", "16 hex digits"]),
])
def test_malformed_overrides_fail_at_start_up(project, text, needles):
    """Not after generation and scoring in the select job (which removed the old selection)."""
    project.path("characters/mira/overrides.yaml").write_text(text)
    files = set_character(project, overrides="characters/mira/overrides.yaml")
    fails_before_any_job(project, "characters.mira.overrides", *needles, configfiles=files)


def test_overlong_character_name_fails_at_start_up(project):
    files = set_character(project, name="m" * 65)
    fails_before_any_job(project, "longer than 64", configfiles=files)
