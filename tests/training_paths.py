"""Where a finished project's current training and evaluation are: results/<c>/train/<fingerprint>/
and results/<c>/eval/<fingerprint>/, the fingerprint as the workflow computes it (synthlora.layout)."""

from __future__ import annotations

from pathlib import Path

from synthlora.config import load_config
from synthlora.layout import current_fingerprint

from conftest import TEST_CONFIG


def fingerprint_of(wf, configfiles=TEST_CONFIG, name: str = "mira") -> str:
    fp = current_fingerprint(load_config(configfiles, wf.root), name, wf.root)
    assert fp, "no selection yet"
    return fp


def training(wf, configfiles=TEST_CONFIG, name: str = "mira") -> Path:
    """The current training's folder (it need not exist yet)."""
    return wf.path(f"results/{name}/train/{fingerprint_of(wf, configfiles, name)}")


def evaluation(wf, configfiles=TEST_CONFIG, name: str = "mira") -> Path:
    return wf.path(f"results/{name}/eval/{fingerprint_of(wf, configfiles, name)}")
