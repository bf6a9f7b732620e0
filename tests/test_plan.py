import copy
from collections import Counter
from pathlib import Path

import json
import yaml

from synthlora.plan import make_plan, pixel_inputs, regions_of, visible_objects

REPO = Path(__file__).resolve().parents[1]


def defaults():
    """plan and generate sections with the schema's defaults, as the workflow sees them."""
    from snakemake.utils import validate

    cfg = {"characters": {"mira": {"reference": "r", "description": "d", "trigger": "t"}}}
    validate(cfg, str(REPO / "config/config.schema.yaml"), set_default=True)
    return cfg


FEATURES = json.loads((REPO / "characters/mira/features.json").read_text())


def test_plan_is_deterministic_and_prefix_stable():
    cfg = defaults()
    a = make_plan(FEATURES, cfg["plan"], cfg["generate"])
    b = make_plan(FEATURES, cfg["plan"], cfg["generate"])
    assert a == b
    more = copy.deepcopy(cfg["plan"])
    more["candidates"] += 4
    c = make_plan(FEATURES, more, cfg["generate"])
    assert c["shots"][: len(a["shots"])] == a["shots"]
    assert len({s["key"] for s in c["shots"]}) == len(c["shots"])


def test_each_dimension_is_balanced():
    cfg = defaults()
    shots = make_plan(FEATURES, cfg["plan"], cfg["generate"])["shots"]  # 80 shots
    for dim in ("views", "poses", "expressions", "framings"):
        counts = Counter(s["tags"][dim] for s in shots)
        assert set(counts) == set(cfg["plan"][dim])
        assert max(counts.values()) - min(counts.values()) <= 1, (dim, counts)


def test_prompt_names_only_objects_visible_in_the_framing():
    cfg = defaults()
    shots = make_plan(FEATURES, cfg["plan"], cfg["generate"])["shots"]
    portraits = [s for s in shots if s["tags"]["framings"] == "portrait"]
    full = [s for s in shots if s["tags"]["framings"] == "full body"]
    assert portraits and full
    for s in portraits:
        assert "boots" not in s["prompt"] and "trousers" not in s["prompt"]
        assert "hair" in s["prompt"] and "star hairpin" in s["objects"]
    for s in full:
        assert "red ankle boots" in s["prompt"] and "dark-green trousers" in s["prompt"]


def test_position_words_map_to_regions():
    regions = defaults()["plan"]["regions"]
    assert regions_of("feet", regions) == {"feet"}
    assert regions_of("right side of the head", regions) == {"head"}
    assert regions_of("torso and arms", regions) == {"torso", "arms"}
    # an object whose position names no region is described everywhere
    framing = {"shows": ["head"]}
    assert visible_objects([{"name": "aura", "text": "aura: glow", "position": "around her"}], framing, regions)


def test_key_names_pixel_inputs_only():
    cfg = defaults()
    base = make_plan(FEATURES, cfg["plan"], cfg["generate"])["shots"]
    moved = make_plan(FEATURES, cfg["plan"], {**cfg["generate"], "device": "cuda:3"})["shots"]
    assert [s["key"] for s in base] == [s["key"] for s in moved]
    stepped = make_plan(FEATURES, cfg["plan"], {**cfg["generate"], "steps": 31})["shots"]
    assert not {s["key"] for s in base} & {s["key"] for s in stepped}
    assert "device" not in pixel_inputs(cfg["generate"])
