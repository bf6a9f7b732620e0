"""A user's config gets the schema's defaults (meant for real runs), never the demo's values; the
demo runs when no config file is named; every run says which config files it read."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from conftest import _env
from synthlora.cli import main as cli
from synthlora.config import BACKEND_MODELS, ConfigError, load_config

USER_CONFIG = """\
characters:
  ada:
    reference: characters/mira/reference.png
    description: characters/mira/description.md
    trigger: ada_sl
generate:
  backend: {backend}
"""


def schema_default(*keys):
    node = yaml.safe_load(open("config/config.schema.yaml"))
    for k in keys:
        node = node["properties"][k]
    return node["default"]


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    """A workflow directory with the repository's config and characters, and a user's one-character config."""
    import shutil

    from conftest import REPO

    for name in ("config", "characters"):
        shutil.copytree(REPO / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)

    def write(backend):
        (tmp_path / "my.yaml").write_text(USER_CONFIG.format(backend=backend))
        return "my.yaml"
    return write


@pytest.mark.parametrize("backend", ["diffusers", "openai", "folder"])
def test_a_users_config_gets_the_schemas_defaults_not_the_demos(user_config, backend):
    res = CliRunner().invoke(cli, ["config", "--configfile", user_config(backend)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("# config files read: my.yaml\n")
    effective = yaml.safe_load(res.output)
    demo = yaml.safe_load(open("config/config.yaml"))
    assert list(effective["characters"]) == ["ada"], "the demo's character must not join a user's run"
    for key in ("near_copy_min_similarity", "max_background_distance", "count", "embedder"):
        assert effective["select"][key] == schema_default("select", key)
    # the demo's values are different, so the assertions above do tell the two apart
    assert demo["select"]["near_copy_min_similarity"] != effective["select"]["near_copy_min_similarity"]
    assert demo["select"]["max_background_distance"] != effective["select"]["max_background_distance"]
    assert effective["plan"]["width"] == 1024 and effective["train"]["resolution"] == 1024
    assert not any("demo-models" in str(effective[s].get(k, "")) for s, k in
                   [("analyze", "model"), ("generate", "model"), ("caption", "model"), ("train", "base_model"),
                    ("select", "embedder"), ("evaluate", "embedder")]), "no real run may default to a demo model"
    if backend in BACKEND_MODELS["generate"]:
        assert effective["generate"]["model"] == BACKEND_MODELS["generate"][backend]


def test_no_config_file_means_the_demo(user_config):
    config = load_config([])
    assert list(config["characters"]) == ["mira"]
    assert config["generate"]["model"].startswith("resources/demo-models/")
    assert config["select"]["near_copy_min_similarity"] > 1, "the demo's random embedder needs the guard's half off"


def test_a_config_naming_no_character_is_refused_with_the_key(user_config):
    open("typo.yaml", "w").write("select:\n  count: 10\n")
    with pytest.raises(ConfigError, match="'characters' is a required property"):
        load_config(["typo.yaml"])


@pytest.mark.workflow
def test_every_run_says_which_config_files_it_read(fresh):
    (fresh.root / "my.yaml").write_text(USER_CONFIG.format(backend="diffusers"))
    dry = fresh.snakemake("-n", configfiles=("my.yaml",))
    assert "config files read: my.yaml\n" in dry.output
    assert "config/config.yaml" not in dry.output.split("config files read:")[1].splitlines()[0]
    import subprocess
    import sys

    # no --configfile: the demo; no --cores: profiles/default gives them (a report needs them too)
    demo = subprocess.run([sys.executable, "-m", "snakemake", "--report", "report.html"], cwd=fresh.root,
                          capture_output=True, text=True, env=_env())
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (fresh.root / "report.html").stat().st_size > 0
    assert "config files read: config/config.yaml\n" in demo.stdout + demo.stderr
