"""Checks that run when the workflow starts, before any job: bad input fails here, naming the
file, key or value and how to fix it, so no money or GPU time is spent on a doomed run."""

from __future__ import annotations

import re
from pathlib import Path

from synthlora.features import FeaturesError, load_schema

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ConfigError(ValueError):
    pass


def config_problem(config: dict, schema_path: str | Path) -> str | None:
    """Validate and fill defaults with snakemake.utils.validate; return a readable message on failure."""
    import jsonschema
    import yaml
    from snakemake.utils import validate

    try:
        validate(config, str(schema_path), set_default=True)
        return None
    except Exception:
        # snakemake's message is long; find the first violation and say where it is.
        schema = yaml.safe_load(Path(schema_path).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: len(list(e.path)))
        if not errors:
            raise
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        if e.validator == "additionalProperties":
            extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
            return (f"unknown config key {', '.join(repr(x) for x in extra)} under {where}; "
                    f"known keys there: {', '.join(sorted(e.schema.get('properties', {})))} (see config/config.schema.yaml)")
        return f"config value at {where}: {e.message} (see config/config.schema.yaml)"


def check_reference(path: str | Path, max_bytes: int, max_pixels: int, key: str) -> None:
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{key}: reference image {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"{key}: reference image {path} is {size / 2**20:.1f} MiB, over limits.max_reference_bytes "
                          f"({max_bytes / 2**20:.1f} MiB); downscale it (the analysis model sees a small version anyway)")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ConfigError(f"{key}: reference image {path} is {w}x{h} = {w * h} pixels, over "
                                  f"limits.max_reference_pixels ({max_pixels}); downscale it")
            im.verify()
    except ConfigError:
        raise
    except Image.DecompressionBombError as exc:
        raise ConfigError(f"{key}: reference image {path} is too large ({exc}); it is over "
                          f"limits.max_reference_pixels ({max_pixels}), downscale it") from None
    except Exception as exc:
        raise ConfigError(f"{key}: reference image {path} cannot be decoded ({type(exc).__name__}: {exc}); "
                          "export it again as PNG or JPEG") from None


def check_characters(config: dict) -> None:
    limits = config["limits"]
    for name, ch in config["characters"].items():
        key = f"characters.{name}"
        if not NAME.match(name):
            raise ConfigError(f"character name {name!r} is not allowed: it becomes a directory name, so use only "
                              "letters, digits, '_' and '-' (no '/', '..' or spaces)")
        check_reference(ch["reference"], limits["max_reference_bytes"], limits["max_reference_pixels"], f"{key}.reference")
        if not Path(ch["description"]).is_file():
            raise ConfigError(f"{key}.description: {ch['description']} does not exist")
        try:
            load_schema(ch["features_schema"])
        except FeaturesError as e:
            raise ConfigError(f"{key}.features_schema: {e}") from None
        if config["analyze"]["backend"] == "manual" and not Path(ch["features_manual"] or "/nonexistent").is_file():
            raise ConfigError(f"{key}.features_manual: analyze.backend is 'manual', so write the features file and "
                              f"name it here (now: {ch['features_manual']!r})")
    if not Path(config["analyze"]["instruction"]).is_file():
        raise ConfigError(f"analyze.instruction: {config['analyze']['instruction']} does not exist")
    plan = config["plan"]
    for cat in config["caption"]["categories"]:
        if not plan[cat]:
            raise ConfigError(f"caption.categories names {cat!r} but plan.{cat} is empty")
    for framing, entry in plan["framings"].items():
        unknown = set(entry["shows"]) - set(plan["regions"])
        if unknown:
            raise ConfigError(f"plan.framings.{framing}.shows names unknown region(s) {sorted(unknown)}; "
                              f"regions are {sorted(plan['regions'])}")
    if config["select"]["count"] > plan["candidates"]:
        raise ConfigError(f"select.count ({config['select']['count']}) is larger than plan.candidates "
                          f"({plan['candidates']}); raise plan.candidates or lower select.count")
