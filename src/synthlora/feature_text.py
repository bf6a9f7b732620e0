"""How a feature schema becomes prompt text.

A schema says, in an ``"x-synthlora"`` block at its top level (JSON Schema ignores unknown
keywords, and the analysis backends never send it to a model), which fields make the character's
summary, which list holds the character's objects, which of each object's fields make its phrase,
which field places an object on the body (so framings that do not show it leave it out), and
which objects must be preserved. Without the block, the seed study's structure applies:

    "x-synthlora": {"summary": ["description"], "objects": "object",
                    "object_text": ["name", "description"], "position": "position",
                    "must_preserve": true, "templates": {}}

Fields are named by path ("outfit.variant" is ``variant`` inside the ``outfit`` object; object
fields are paths inside one object). ``prompt_mapping`` checks every named field against the
schema when the workflow starts, so a renamed field fails there, by name, instead of yielding
prompts without the character. The rest of this module turns a features file into text with the
mapping: plain functions that the plan (and per-image checks) call.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from synthlora.features import FeaturesError

MAPPING_KEY = "x-synthlora"
DEFAULT_MAPPING: dict[str, Any] = {
    "summary": ["description"],
    "objects": "object",
    "object_text": ["name", "description"],
    "position": "position",
    "must_preserve": True,
    "templates": {},
}
# What each mapping key is, for error messages and the schema's documentation.
MAPPING_HELP = {
    "summary": "fields whose text describes the whole character, in every prompt",
    "objects": "the list of the character's objects ('' for a schema without one)",
    "object_text": "fields of one object that make its phrase; the first is its name",
    "position": "field of one object that says where it is on the body ('' = shown in every framing)",
    "must_preserve": "true (every object), false, a yes/no field of one object, or a list of object names",
    "templates": "field path -> text with {} for the field's text, e.g. {\"parts.side\": \"on the {} side\"}",
}


# ---- the mapping, checked against the schema ---------------------------------------------------


class MappingProblem(ValueError):
    """One mistake in the mapping: the mapping key it is under, and what is wrong."""

    def __init__(self, key: str, text: str):
        super().__init__(text)
        self.key, self.text = key, text


def prompt_mapping(schema: dict, source: str) -> dict:
    """The schema's mapping with the defaults filled in, every named field checked against the
    schema. Raises FeaturesError naming ``source`` (the schema file), the mapping key and the field,
    and listing the fields the schema does have."""
    told = MAPPING_KEY in schema
    try:
        mapping = _filled_mapping(schema.get(MAPPING_KEY, {}))
        _check_fields(schema, mapping)
    except MappingProblem as e:
        where = f"{MAPPING_KEY}.{e.key}" if e.key else f'"{MAPPING_KEY}"'
        if told:
            raise FeaturesError(f"feature schema {source}: {where} {e.text}.") from None
        raise FeaturesError(
            f"feature schema {source}: {where} (the default: the schema has no \"{MAPPING_KEY}\" block) {e.text}. "
            f'Name the fields your schema uses in an "{MAPPING_KEY}" block at its top level, e.g. "{MAPPING_KEY}": '
            '{"summary": ["<field>"], "objects": "<list field or empty>", "object_text": ["<name field>", '
            '"<text field>"], "position": "<field or empty>"}.') from None
    return mapping


def _filled_mapping(raw: Any) -> dict:
    """The mapping as written, with defaults for the keys it leaves out, in one shape (lists are
    lists, 'none' is '')."""
    if not isinstance(raw, dict):
        raise MappingProblem("", f"must be an object with the keys {', '.join(DEFAULT_MAPPING)}")
    raw = {k: v for k, v in raw.items() if k != "$comment"}  # a note for readers, as in JSON Schema
    unknown = sorted(set(raw) - set(DEFAULT_MAPPING))
    if unknown:
        raise MappingProblem("", f"has unknown key(s) {', '.join(map(repr, unknown))}; its keys are: "
                             + "; ".join(f"{k} ({v})" for k, v in MAPPING_HELP.items()))
    m = {**copy.deepcopy(DEFAULT_MAPPING), **copy.deepcopy(raw)}
    for key in ("summary", "object_text"):
        if isinstance(m[key], str):
            m[key] = [m[key]] if m[key] else []
        if not (isinstance(m[key], list) and all(isinstance(p, str) and p for p in m[key])):
            raise MappingProblem(key, "must be a list of field names")
    for key in ("objects", "position"):
        m[key] = m[key] or ""
        if not isinstance(m[key], str):
            raise MappingProblem(key, "must be a field name (or empty)")
    if not isinstance(m["templates"], dict) or not all(isinstance(t, str) and "{}" in t for t in m["templates"].values()):
        raise MappingProblem("templates", "must map field paths to texts containing {}, e.g. 'on the {} side'")
    mp = m["must_preserve"]
    if not (isinstance(mp, (bool, str)) or (isinstance(mp, list) and all(isinstance(n, str) for n in mp))):
        raise MappingProblem("must_preserve", "must be true, false, a field name or a list of object names")
    return m


def _schema_node(root: dict, path: str, key: str, within: str = "") -> dict:
    """The schema of the field at ``path`` under ``root`` (``within``: the object list whose item
    ``root`` is); a MappingProblem listing the properties there when it has none such."""
    here, seen = root, []
    for part in path.split("."):
        props = here.get("properties") if isinstance(here, dict) else None
        if not props or part not in props:
            where = (f"inside '{'.'.join(seen)}'" if seen else
                     f"in each item of '{within}'" if within else "at the top level")
            raise MappingProblem(key, f"names the field '{path}', but the schema has no property '{part}' {where} "
                                      f"(the properties there: {', '.join(sorted(props)) if props else 'none'})")
        here = props[part]
        seen.append(part)
        if "$ref" in here:
            raise MappingProblem(key, f"names '{path}', which uses $ref; write that part of the schema out in place")
    return here


def _text_field(root: dict, path: str, key: str, within: str = "") -> None:
    found = _schema_node(root, path, key, within)
    if not _makes_text(found):
        raise MappingProblem(key, f"names '{path}', which is of type {found.get('type', 'unknown')!r}: it cannot "
                                  "become prompt text (use a string, enum, number, a list of those, or an object of those)")


def _check_fields(schema: dict, m: dict) -> None:
    """Every field the mapping names exists in the schema with a usable type, and at least one
    source of the character's text is required (so valid features always name the character)."""
    for path in m["summary"]:
        _text_field(schema, path, "summary")
    items: dict = {}
    objects, mp = m["objects"], m["must_preserve"]
    if objects:
        listed = _schema_node(schema, objects, "objects")
        items = listed["items"] if isinstance(listed.get("items"), dict) else {}
        if _types(listed) != {"array"} or _types(items) != {"object"} or not items.get("properties"):
            raise MappingProblem("objects", f"names '{objects}', which is not a list of objects with properties "
                                            f"(it is {listed.get('type', 'untyped')!r})")
        if not m["object_text"]:
            raise MappingProblem("object_text", "is empty: name at least the field that names an object")
        for path in m["object_text"]:
            _text_field(items, path, "object_text", objects)
        if m["position"]:
            found = _schema_node(items, m["position"], "position", objects)
            if not (_types(found) <= {"string", "array"} or "enum" in found):
                raise MappingProblem("position", f"names '{m['position']}', which is not text (type {found.get('type')!r})")
        if isinstance(mp, str) and _types(_schema_node(items, mp, "must_preserve", objects)) != {"boolean"}:
            raise MappingProblem("must_preserve", f"names '{mp}', which is not a yes/no (boolean) field")
    elif isinstance(mp, str):
        raise MappingProblem("must_preserve", f"names the field '{mp}', but objects is empty (no object list)")
    for path in m["templates"]:
        if objects and path.startswith(objects + "."):
            _schema_node(items, path[len(objects) + 1:], "templates", objects)
        else:
            _schema_node(schema, path, "templates")

    summary_required = any(_required(schema, p) for p in m["summary"])
    objects_required = bool(objects and _required(schema, objects)
                            and int(_schema_node(schema, objects, "objects").get("minItems", 0)) >= 1
                            and any(_required(items, p) for p in m["object_text"]))
    if not summary_required and not objects_required:
        named = m["summary"] + ([f"{objects} (with minItems 1) and its {m['object_text'][0]}"] if objects else [])
        raise MappingProblem("summary", "and objects name no required field, so valid features could leave every "
                                        f"prompt without the character; make one of these required: "
                                        f"{', '.join(named) or 'none named'}")


def _types(node: dict) -> set[str]:
    kind = node.get("type")
    kinds = set(kind) if isinstance(kind, list) else ({kind} if kind else set())
    return kinds - {"null"}


def _makes_text(node: dict) -> bool:
    if "enum" in node or "const" in node:
        return True
    kinds = _types(node)
    if not kinds or "boolean" in kinds:
        return False
    if kinds <= {"string", "number", "integer"}:
        return True
    if kinds == {"array"}:
        return isinstance(node.get("items"), dict) and _makes_text(node["items"])
    if kinds == {"object"}:
        return any(_makes_text(p) for p in node.get("properties", {}).values() if isinstance(p, dict))
    return False


def _required(root: dict, path: str) -> bool:
    """Whether every step of ``path`` is required, so valid features always have it."""
    here = root
    for part in path.split("."):
        if part not in here.get("required", []):
            return False
        here = here.get("properties", {}).get(part, {})
    return True


def used_fields(mapping: dict) -> set[str]:
    """Top-level fields the mapping turns into text or reads (the others never reach a prompt)."""
    paths = [*mapping["summary"], mapping["objects"]]
    return {p.split(".")[0] for p in paths if p}


# ---- features → text ---------------------------------------------------------------------------


def field_at(data: Any, path: str) -> Any:
    """The value at a dotted path, or None where any step is missing (optional fields)."""
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _words(path: str) -> str:
    return path.replace(".", " ").replace("_", " ")


def _plain(value: Any) -> str:
    """A value as bare text: lists comma-separated, objects as 'key: value' pairs; empty for none."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        parts = [_plain(v) for v in value]
        return ("; " if any(isinstance(v, dict) for v in value) else ", ").join(p for p in parts if p)
    if isinstance(value, dict):
        parts = [(k, _plain(v)) for k, v in value.items()]
        return ", ".join(f"{_words(k)}: {t}" for k, t in parts if t)
    return str(value)


def field_text(value: Any, path: str, templates: dict[str, str], nested: bool = False) -> str:
    """One field's value as readable prompt text. A string, enum or number is written as it is, a
    list as 'palette: red, white', an object field by field ('outfit variant: casual'); a template
    ("on the {} side") replaces the label. Missing, empty and yes/no values give ''."""
    template = templates.get(path)
    if isinstance(value, dict):
        parts = [field_text(v, f"{path}.{k}", templates, nested=True) for k, v in value.items()]
        text = ", ".join(p for p in parts if p)
    else:
        text = _plain(value)
        if text and not template and (nested or isinstance(value, list)):
            text = f"{_words(path)}: {text}"
    if text and template:
        return template.replace("{}", text)
    return text


def summary_text(features: dict, mapping: dict) -> str:
    """The character's summary: the mapping's summary fields, in order, comma-separated."""
    parts = [field_text(field_at(features, p), p, mapping["templates"]) for p in mapping["summary"]]
    return ", ".join(p for p in parts if p)


def feature_objects(features: dict, mapping: dict) -> list[dict]:
    """The character's objects as {name, text, position, must_preserve}, must-preserve ones first
    (the start of a prompt weighs most). ``text`` is the object's phrase ('hair: short blue bob'),
    ``name`` its first text field, ``position`` where it is on the body ('' if not said)."""
    if not mapping["objects"]:
        return []
    items = field_at(features, mapping["objects"]) or []
    objects = [_object_record(item, mapping) for item in items if isinstance(item, dict)]
    objects = [o for o in objects if o["text"]]
    return sorted(objects, key=lambda o: not o["must_preserve"])


def _object_record(item: dict, mapping: dict) -> dict:
    def text_of(path: str) -> str:
        return field_text(field_at(item, path), f"{mapping['objects']}.{path}", mapping["templates"])

    label_field, *rest_fields = mapping["object_text"]
    name = text_of(label_field)
    rest = ", ".join(t for t in map(text_of, rest_fields) if t)
    where = field_at(item, mapping["position"]) if mapping["position"] else None
    mp = mapping["must_preserve"]
    if isinstance(mp, bool):
        must = mp
    elif isinstance(mp, str):
        must = bool(field_at(item, mp))
    else:
        must = name in mp
    return {"name": name, "text": f"{name}: {rest}" if name and rest else name or rest,
            "position": _plain(where).replace(",", " "), "must_preserve": must}


def regions_of(position: str, regions: dict[str, list[str]]) -> set[str]:
    """Body regions a feature's free-text ``position`` mentions (word-prefix match)."""
    words = re.findall(r"[a-z]+", position.lower())
    found = set()
    for region, keywords in regions.items():
        if any(w.startswith(k) for k in keywords for w in words):
            found.add(region)
    return found


def visible_objects(objects: list[dict], framing: dict, regions: dict[str, list[str]]) -> list[dict]:
    """Objects (from ``feature_objects``) visible in a framing. An object whose position names no
    known region is kept everywhere (better to describe it once too often than to lose it)."""
    shows = set(framing["shows"])
    visible = []
    for obj in objects:
        where = regions_of(str(obj.get("position", "")), regions)
        if not where or where & shows:
            visible.append(obj)
    return visible


def must_preserve_objects(features: dict, mapping: dict, regions: dict[str, list[str]]) -> list[dict]:
    """The objects every image must keep, each as {name, text, regions}: what a per-image check asks
    about (an object with no known region may be anywhere: its regions are empty)."""
    return [{"name": o["name"], "text": o["text"], "regions": sorted(regions_of(o["position"], regions))}
            for o in feature_objects(features, mapping) if o["must_preserve"]]


def feature_questions(features: dict, mapping: dict, framing: dict | None, regions: dict[str, list[str]]) -> dict[str, str]:
    """question → feature name for the must-preserve objects a framing shows: the yes/no checks the
    caption model answers for every candidate, where a 'no' rejects the picture naming the feature
    (seed 000 caught lost details by eye). No framing (a picture without plan tags): every one."""
    objects = [o for o in feature_objects(features, mapping) if o["must_preserve"]]
    if framing is not None:
        objects = visible_objects(objects, framing, regions)
    return {f"Is the character's {o['name']} in the image, looking as described ({o['text']})?": o["name"]
            for o in objects}
