"""One pinned dependency set: pyproject.toml, envs/lock.txt, the conda envs and the installed
packages agree, and every package a rule imports is in the rules' environment."""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)$")
# Imported only where a user opts in (train.optimizer_type AdamW8bit), with a message saying to install it.
OPTIONAL_IMPORTS = {"bitsandbytes"}


def pins(lines) -> dict[str, str]:
    return {canonicalize_name(m.group(1)): m.group(2) for line in lines if (m := PIN.match(line.strip()))}


def lock() -> dict[str, str]:
    return pins((REPO / "envs/lock.txt").read_text().splitlines())


def env_pip_pins(name: str) -> tuple[dict, list]:
    doc = yaml.safe_load((REPO / "envs" / name).read_text())
    pip = next(d["pip"] for d in doc["dependencies"] if isinstance(d, dict))
    return pins(pip), [d for d in doc["dependencies"] if isinstance(d, str)]


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_the_lock_satisfies_every_requirement_of_pyproject():
    locked = lock()
    reqs = [*pyproject()["dependencies"], *(r for extra in pyproject()["optional-dependencies"].values() for r in extra)]
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is required by pyproject.toml but not in envs/lock.txt: run envs/relock.sh"
        assert Version(locked[name]) in req.specifier, \
            f"envs/lock.txt has {req.name}=={locked[name]}, outside pyproject.toml's {req.specifier}: run envs/relock.sh"


def test_the_conda_envs_pin_exactly_the_locked_versions():
    locked = lock()
    for env in sorted((REPO / "envs").glob("*.yaml")):
        env_pins, _ = env_pip_pins(env.name)
        assert env_pins, f"{env.name} pins nothing"
        for name, version in env_pins.items():
            assert locked.get(name) == version, f"{env.name} pins {name}=={version}, envs/lock.txt {locked.get(name)}"
        unpinned = [d for d in yaml.safe_load(env.read_text())["dependencies"][-1]["pip"] if not PIN.match(d)]
        assert not unpinned, f"{env.name} installs {unpinned} without the lock's version"
    runtime = {canonicalize_name(Requirement(r).name) for r in pyproject()["dependencies"]}
    missing = runtime - set(env_pip_pins("pipeline.yaml")[0])
    assert not missing, f"envs/pipeline.yaml lacks {sorted(missing)}: run envs/relock.sh"


def test_an_env_that_installs_synthlora_has_a_python_it_supports():
    floor = Version(pyproject()["requires-python"].lstrip(">="))
    for env in sorted((REPO / "envs").glob("*.yaml")):
        text = env.read_text()
        python = next(d for d in yaml.safe_load(text)["dependencies"] if isinstance(d, str) and d.startswith("python="))
        if re.search(r"^\s*-\s*synthlora", text, re.M):
            assert Version(python.split("=")[1]) >= floor, f"{env.name}: {python} cannot install synthlora"


def imported_modules() -> dict[str, set[str]]:
    """Top-level modules imported by the rules, their scripts and the package → the files importing them."""
    files = [REPO / "Snakefile", *(REPO / "rules").glob("*.smk"), *(REPO / "scripts").glob("*.py"),
             *(REPO / "src").rglob("*.py")]
    found: dict[str, set[str]] = {}
    for f in files:
        for m in re.finditer(r"^\s*(?:from\s+(\w+)[\w.]*\s+import|import\s+(\w+))", f.read_text(), re.M):
            found.setdefault(m.group(1) or m.group(2), set()).add(str(f.relative_to(REPO)))
    return found


def test_the_rules_environment_has_every_package_they_import():
    distributions = md.packages_distributions()
    env = set(env_pip_pins("pipeline.yaml")[0])
    for module, where in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module == "synthlora" or module in OPTIONAL_IMPORTS:
            continue
        dists = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert dists, f"{module} (imported in {sorted(where)}) is not installed: add it to pyproject.toml and relock"
        assert dists & env, f"{module} (imported in {sorted(where)}) is not in envs/pipeline.yaml: run envs/relock.sh"


def test_installed_packages_are_the_locked_versions():
    """What the README's install command put here is what the lock says (torch's local tag aside:
    2.13.0+cpu is the CPU build of 2.13.0)."""
    locked = lock()
    wrong = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in locked and Version(dist.version).public != Version(locked[name]).public:
            wrong[name] = (dist.version, locked[name])
    if wrong:
        pytest.fail("installed ≠ envs/lock.txt (install with: pip install -c envs/lock.txt -e '.[test]'): "
                    + ", ".join(f"{n} {have} (lock {want})" for n, (have, want) in sorted(wrong.items())))
    for req in pyproject()["dependencies"]:
        name = Requirement(req).name
        try:
            md.version(name)
        except md.PackageNotFoundError:
            pytest.fail(f"{name} (pyproject.toml) is not installed")
