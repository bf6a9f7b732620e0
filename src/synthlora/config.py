"""Checks that run when the workflow starts, before any job: bad input fails here, naming the
file, key or value and how to fix it, so no money or GPU time is spent on a doomed run."""

from __future__ import annotations

import copy
import re
from pathlib import Path

from synthlora.captions import SD_SCRIPTS_CAPTION_TOKENS, clip_tokens_at_least, format_caption
from synthlora.feature_text import prompt_mapping
from synthlora.features import FeaturesError, load_schema
from synthlora.plan import template_problem

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ConfigError(ValueError):
    pass


# The demo: the example character on tiny random-weight models, offline on a CPU. Read only when no
# config file is named, never under a user's: its demo-only values (thresholds that suit random
# weights, tiny sizes) must not leak into a real run, which gets the schema's defaults instead.
DEMO_CONFIG = "config/config.yaml"
SCHEMA = "config/config.schema.yaml"


def config_files(configfiles) -> list[str]:
    """The config files a run reads, in merge order: the ones named, or the demo config alone."""
    return [str(f) for f in configfiles] or [DEMO_CONFIG]


def merge_config(into: dict, extra: dict) -> dict:
    """Snakemake's --configfile semantics: nested mappings merge, everything else replaces."""
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            merge_config(into[k], v)
        else:
            into[k] = copy.deepcopy(v)
    return into


def load_config(configfiles, root: str | Path = ".") -> dict:
    """The effective config of a run, as the workflow sees it: files merged, defaults filled, validated
    (a ConfigError names the file or key otherwise)."""
    import yaml

    root = Path(root)
    merged: dict = {}
    for f in config_files(configfiles):
        path = Path(f) if Path(f).is_absolute() else root / f
        try:
            merge_config(merged, yaml.safe_load(path.read_text(encoding="utf-8")) or {})
        except OSError as exc:
            raise ConfigError(f"config file {f} cannot be read ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {f} is not valid YAML: {exc}") from None
    problem = config_problem(merged, root / SCHEMA)
    if problem:
        raise ConfigError(problem)
    return merged


# A stage's model when its config leaves it '' (the schema's default): what suits the chosen backend.
# Model names change fast (FIELD-NOTES): this table and the schema's descriptions are the one place.
BACKEND_MODELS = {
    "analyze": {"transformers": "Qwen/Qwen2.5-VL-7B-Instruct", "openai": "gpt-5.5"},
    "caption": {"transformers": "Qwen/Qwen2.5-VL-7B-Instruct", "openai": "gpt-5.5"},
    "generate": {"diffusers": "stabilityai/stable-diffusion-xl-base-1.0", "openai": "gpt-image-2"},
}


def fill_backend_models(config: dict) -> None:
    """Give each stage whose model is '' its backend's default model (in place, like the schema's defaults)."""
    for stage, models in BACKEND_MODELS.items():
        section = config[stage]
        if not section.get("model"):
            section["model"] = models.get(section["backend"], "")


# The schema's rules for names inside maps, in words.
NAME_RULES = {
    "^[A-Za-z0-9][A-Za-z0-9_]*$": "use letters, digits and '_' only (it becomes part of file names)",
    "^[^,\\n]*[^,\\s][^,\\n]*$": "no commas and not blank (tags are written comma-separated into captions)",
}


def _violation(e) -> str:
    where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        return (f"unknown config key {', '.join(repr(x) for x in extra)} under {where}; "
                f"known keys there: {', '.join(sorted(e.schema.get('properties', {})))}")
    if "propertyNames" in e.schema_path:
        # A map's key broke the rule for names there (e.instance is the key; the path is the map's).
        if e.validator == "enum":
            return (f"unknown name {e.instance!r} under {where}; choices: {', '.join(map(str, e.validator_value))}")
        rule = NAME_RULES.get(e.validator_value, f"it must match {e.validator_value}")
        return f"name {e.instance!r} under {where} is not allowed: {rule}"
    if e.validator == "required":
        return f"{where}: {e.message}"
    return f"config value at {where}: {e.message}"


def config_problem(config: dict, schema_path: str | Path) -> str | None:
    """Validate and fill defaults with snakemake.utils.validate; return a readable message on failure
    that names every violation (a user fixes them in one go, not one per run)."""
    import jsonschema
    import yaml
    from snakemake.utils import validate

    try:
        validate(config, str(schema_path), set_default=True)
        fill_backend_models(config)
        return None
    except Exception:
        # snakemake's message is long; list each violation and say where it is.
        schema = yaml.safe_load(Path(schema_path).read_text())
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                        key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
        if not errors:
            raise
        lines = [_violation(e) for e in errors[:12]]
        more = f"\n  … and {len(errors) - 12} more" if len(errors) > 12 else ""
        return ("config does not match config/config.schema.yaml (every key, its default and meaning):\n  "
                + "\n  ".join(lines) + more)


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


def check_caption_length(config: dict, name: str) -> None:
    """The longest caption the tag vocabulary allows must fit the 75 tokens sd-scripts trains on
    (max_token_length unset in train.toml); the words past them would silently not be learnt."""
    caption = config["caption"]
    longest = {cat: max(config["plan"][cat], key=clip_tokens_at_least) for cat in caption["categories"] if config["plan"][cat]}
    text = format_caption(config["characters"][name]["trigger"], caption["always"], longest, caption["categories"])
    tokens = clip_tokens_at_least(text)
    if tokens > SD_SCRIPTS_CAPTION_TOKENS:
        raise ConfigError(f"characters.{name}: the longest caption the tags allow, {text!r}, has at least {tokens} "
                          f"CLIP tokens, over the {SD_SCRIPTS_CAPTION_TOKENS} that kohya sd-scripts trains on (the rest "
                          "would be cut): shorten the longest tags in plan.<category>, caption.always or the trigger, or "
                          "tag fewer caption.categories")


# Names that become parts of file names: a character's directory, a dataset folder "<repeats>_<trigger>",
# epoch files "<name>-000001.safetensors". Well under the 255 bytes a file name may have.
MAX_NAME_BYTES = 64
MAX_TRIGGER_BYTES = 100
KEY = re.compile(r"^[0-9a-f]{16}$")


def trigger_problem(trigger: str) -> str | None:
    """Why a trigger word cannot be used, or None. It is written first in every caption and names the
    kohya dataset folder, so it must be one clean token of text."""
    import unicodedata

    if trigger != trigger.strip():
        return "it starts or ends with a space; remove it (captions would carry it)"
    if not trigger:
        return "it is empty"
    if "," in trigger:
        return "it contains a comma (captions are comma-separated tags)"
    if "/" in trigger or "\\" in trigger:
        return "it contains '/' or '\\' (it names the dataset folder <repeats>_<trigger>)"
    bad = sorted({repr(ch) for ch in trigger if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")})
    if bad:
        return f"it contains control characters {', '.join(bad)}"
    if len(trigger.encode("utf-8")) > MAX_TRIGGER_BYTES:
        return f"it is longer than {MAX_TRIGGER_BYTES} bytes"
    return None


def check_overrides(path: str, key: str) -> None:
    """An overrides file must be YAML: a mapping with 'include' and/or 'exclude' lists of image keys
    (16 hex digits, from selection.tsv). Which keys are candidates is known only once the plan is
    made; select checks that."""
    import yaml

    if not Path(path).is_file():
        raise ConfigError(f"{key}: overrides file {path} does not exist (write it, or set overrides: '')")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: overrides file {path} is not valid YAML ({exc})") from None
    if not isinstance(data, dict) or set(data) - {"include", "exclude"}:
        extra = sorted(map(str, set(data) - {"include", "exclude"})) if isinstance(data, dict) else None
        raise ConfigError(f"{key}: overrides file {path} must be a mapping with 'include' and/or 'exclude' lists of "
                          "image keys" + (f"; unknown key(s) {extra}" if extra else f", not {type(data).__name__}"))
    for field in ("include", "exclude"):
        keys = data.get(field) or []
        if not isinstance(keys, list):
            raise ConfigError(f"{key}: overrides file {path}: '{field}' must be a list of image keys, not {keys!r}")
        bad = [k for k in keys if not KEY.match(str(k))]
        if bad:
            raise ConfigError(f"{key}: overrides file {path}: {field} has {', '.join(map(repr, bad))}, which "
                              "is not an image key (16 hex digits; see the key column of selection.tsv; quote "
                              "keys that are all digits)")
    both = {str(k) for k in data.get("include") or []} & {str(k) for k in data.get("exclude") or []}
    if both:
        raise ConfigError(f"{key}: overrides file {path}: {', '.join(sorted(both))} is both included and excluded")


def check_characters(config: dict) -> None:
    limits = config["limits"]
    for name, ch in config["characters"].items():
        key = f"characters.{name}"
        if not NAME.match(name):
            raise ConfigError(f"character name {name!r} is not allowed: it becomes a directory name, so use only "
                              "letters, digits, '_' and '-' (no '/', '..' or spaces)")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ConfigError(f"character name {name!r} is longer than {MAX_NAME_BYTES} characters; shorten it")
        problem = trigger_problem(ch["trigger"])
        if problem:
            raise ConfigError(f"{key}.trigger {ch['trigger']!r} is not allowed: {problem}")
        if ch.get("overrides"):
            check_overrides(ch["overrides"], f"{key}.overrides")
        check_reference(ch["reference"], limits["max_reference_bytes"], limits["max_reference_pixels"], f"{key}.reference")
        if not Path(ch["description"]).is_file():
            raise ConfigError(f"{key}.description: {ch['description']} does not exist")
        try:
            # The schema's fields must make the prompt text: a renamed field fails here, by name.
            prompt_mapping(load_schema(ch["features_schema"]), ch["features_schema"])
        except FeaturesError as e:
            raise ConfigError(f"{key}.features_schema: {e}") from None
        check_caption_length(config, name)
        if config["analyze"]["backend"] == "manual" and not Path(ch["features_manual"] or "/nonexistent").is_file():
            raise ConfigError(f"{key}.features_manual: analyze.backend is 'manual', so write the features file and "
                              f"name it here (now: {ch['features_manual']!r})")
    from synthlora.groups import GroupError, check_groups

    try:  # groups: and loras: name known characters and groups (synthlora.groups)
        check_groups(config)
    except GroupError as e:
        raise ConfigError(str(e)) from None
    if not Path(config["analyze"]["instruction"]).is_file():
        raise ConfigError(f"analyze.instruction: {config['analyze']['instruction']} does not exist")
    plan = config["plan"]
    problem = template_problem(plan["prompt_template"])
    if problem:
        raise ConfigError(problem)
    unknown = sorted(set(config["select"]["background_colors"]) - set(plan["backgrounds"]))
    if unknown:
        raise ConfigError(f"select.background_colors names {', '.join(map(repr, unknown))}, which plan.backgrounds "
                          f"does not have (its tags: {', '.join(map(repr, plan['backgrounds']))}); use one of those "
                          "tags, or remove the entry")
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
    least = config["select"].get("min_count")
    if least is not None and least > config["select"]["count"]:
        raise ConfigError(f"select.min_count ({least}) is larger than select.count ({config['select']['count']}): "
                          "the run could never go on; lower select.min_count (null = half of count)")
