"""The feature schema and the features file: load, check, validate, retry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import jsonschema


class FeaturesError(ValueError):
    pass


def load_schema(path: str | Path) -> dict:
    """Load a feature schema and check that it is itself valid JSON Schema."""
    path = Path(path)
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FeaturesError(f"feature schema {path} does not exist (set characters.<name>.features_schema)") from None
    except json.JSONDecodeError as e:
        raise FeaturesError(f"feature schema {path} is not valid JSON: {e}") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        where = "/".join(str(p) for p in e.path) or "(top level)"
        raise FeaturesError(f"feature schema {path} is not valid JSON Schema at {where}: {e.message}") from None
    return schema


def validation_problem(data, schema: dict) -> str | None:
    """The first violation as a readable sentence, or None when ``data`` is valid."""
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if not errors:
        return None
    e = errors[0]
    where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
    return f"at {where}: {e.message}"


def parse_and_validate(text: str, schema: dict, source: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FeaturesError(f"{source} is not valid JSON: {e}") from None
    problem = validation_problem(data, schema)
    if problem:
        raise FeaturesError(f"{source} does not follow the feature schema {problem}")
    return data


def analyze_with_retries(ask: Callable[[int], str], schema: dict, retries: int, source: str) -> tuple[dict, str, int]:
    """Call ``ask(attempt)`` until its answer validates; return (features, raw text, attempts)."""
    last = None
    for attempt in range(retries + 1):
        raw = ask(attempt)
        try:
            return parse_and_validate(raw, schema, source), raw, attempt + 1
        except FeaturesError as e:
            last = e
    raise FeaturesError(f"{last} (after {retries + 1} attempts; raise analyze.retries or fix the model/schema)")
