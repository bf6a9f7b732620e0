"""Shared fixtures: tiny demo models built once, real snakemake runs in temporary directories."""

from __future__ import annotations

import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The small test run: the demo config (characters, tiny models, demo-only thresholds) with the
# test overlay (8 shots, manual analyzer). Named explicitly, as a user names their config files.
TEST_CONFIG = ("config/config.yaml", "config/test.yaml")
WORKFLOW_FILES = ("Snakefile", "rules", "scripts", "config", "characters", "profiles", "envs", "report")

# Two processes on two cores with default threading ran 5-30x slower (FIELD-NOTES).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# This checkout's package, even where another checkout is pip-installed in editable mode.
sys.path.insert(0, str(REPO / "src"))
PYTHONPATH = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def _env(extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": PYTHONPATH}
    for k, v in (extra or {}).items():
        env[k] = os.pathsep.join([v, PYTHONPATH]) if k == "PYTHONPATH" else v
    return env


class Workflow:
    """A workflow copy in a temp dir, driven by the real snakemake command line."""

    def __init__(self, root: Path):
        self.root = root

    def snakemake(self, *args: str, check: bool = True, configfiles=TEST_CONFIG, env=None,
                  timeout: int = 900) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", *configfiles]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env=_env(env))
        proc.output = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.output[-6000:]}")
        return proc

    def jobs(self, proc) -> collections.Counter:
        """Jobs a run executed (or a dry run would execute), by rule name."""
        return collections.Counter(re.findall(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):", proc.output, re.M)) - \
            collections.Counter({"all": 10**6})

    def path(self, rel: str) -> Path:
        return self.root / rel

    def copy(self, dest: Path) -> "Workflow":
        """A copy of this finished project: files, mtimes and snakemake's metadata."""
        shutil.copytree(self.root, dest, symlinks=True,
                        ignore=shutil.ignore_patterns("locks", "log", "incomplete", "__pycache__"))
        return Workflow(dest)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> Path:
    """The demo models, built by the real rule once per session."""
    wf = Workflow(copy_workflow(tmp_path_factory.mktemp("demo-models")))
    wf.snakemake("build_demo_models")
    return wf.path("resources/demo-models")


def new_workflow(dest: Path, demo_models: Path) -> Workflow:
    copy_workflow(dest)
    shutil.copytree(demo_models, dest / "resources" / "demo-models")
    return Workflow(dest)


@pytest.fixture(scope="session")
def finished(tmp_path_factory, demo_models) -> Workflow:
    """One complete run of TEST_CONFIG from a clean directory (demo models aside)."""
    wf = new_workflow(tmp_path_factory.mktemp("finished"), demo_models)
    wf.first_run = wf.snakemake()
    return wf


@pytest.fixture
def project(finished, tmp_path) -> Workflow:
    """A private copy of the finished project, for tests that edit inputs."""
    return finished.copy(tmp_path / "project")


@pytest.fixture
def fresh(tmp_path, demo_models) -> Workflow:
    """A clean workflow directory with the demo models present, nothing else built."""
    return new_workflow(tmp_path / "fresh", demo_models)


@pytest.fixture
def no_torch_hook(tmp_path) -> Path:
    """A PYTHONPATH directory whose sitecustomize makes importing torch (or a library built on it)
    fail: rules run under it prove they stay light."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'diffusers', 'transformers', 'peft'):\n"
        "            raise ImportError(f'light rule imported {name}')\n"
        "sys.meta_path.insert(0, _NoTorch())\n")
    return hook
