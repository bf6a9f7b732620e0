"""Choose K of N candidates, with a reason on every row.

Order of checks: generation failed (recorded in provenance) → undecodable → wrong size → near-duplicate of a sharper image → among the
blurriest → chosen round-robin over views so coverage stays even → beyond the count.
"""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ["key", "selected", "reason", "view", "pose", "expression", "framing", "background",
           "sharpness", "phash", "width", "height"]


def _hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def select(candidates: list[dict[str, Any]], count: int, max_duplicate_distance: int,
           blur_drop_fraction: float, expected_size: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """``candidates``: dicts with ``key``, ``tags`` (from provenance) and ``score`` (from scoring).

    Returns one row per candidate in plan order.
    """
    rows = {c["key"]: {"key": c["key"], "selected": False, "reason": "", **_tag_columns(c), **_score_columns(c)}
            for c in candidates}
    usable = []
    for c in candidates:
        s = c["score"]
        if c.get("failed"):
            rows[c["key"]]["reason"] = f"generation failed: {c['failed']}"
        elif not s.get("decodes"):
            rows[c["key"]]["reason"] = f"undecodable image ({s.get('error', 'unknown error')})"
        elif expected_size and (s["width"], s["height"]) != tuple(expected_size):
            rows[c["key"]]["reason"] = f"wrong size {s['width']}x{s['height']} (expected {expected_size[0]}x{expected_size[1]})"
        else:
            usable.append(c)

    # Near-duplicates: keep the sharper of each close pair.
    by_sharpness = sorted(usable, key=lambda c: (-c["score"]["sharpness"], c["key"]))
    kept: list[dict] = []
    for c in by_sharpness:
        twin = next((k for k in kept if _hamming(k["score"]["phash"], c["score"]["phash"]) <= max_duplicate_distance), None)
        if twin is not None:
            d = _hamming(twin["score"]["phash"], c["score"]["phash"])
            rows[c["key"]]["reason"] = f"near-duplicate of {twin['key']} (phash distance {d} <= {max_duplicate_distance})"
        else:
            kept.append(c)

    # The blurriest fraction goes (never so many that fewer than `count` remain).
    n_drop = min(int(len(kept) * blur_drop_fraction), max(0, len(kept) - count))
    if n_drop:
        cutoff = sorted(c["score"]["sharpness"] for c in kept)[n_drop - 1]
        blurry = sorted(kept, key=lambda c: (c["score"]["sharpness"], c["key"]))[:n_drop]
        for c in blurry:
            rows[c["key"]]["reason"] = f"among the blurriest {blur_drop_fraction:.0%} (sharpness {c['score']['sharpness']:.1f} <= {cutoff:.1f})"
        blurry_keys = {c["key"] for c in blurry}
        kept = [c for c in kept if c["key"] not in blurry_keys]

    # Round-robin over views, sharpest first within each view, so no view dominates.
    by_view: dict[str, list[dict]] = {}
    for c in sorted(kept, key=lambda c: (-c["score"]["sharpness"], c["key"])):
        by_view.setdefault(c["tags"].get("views", ""), []).append(c)
    chosen: list[dict] = []
    while len(chosen) < count and any(by_view.values()):
        for view in sorted(by_view):
            if by_view[view] and len(chosen) < count:
                chosen.append(by_view[view].pop(0))
    for c in chosen:
        rows[c["key"]].update(selected=True, reason=f"selected (sharpness rank within view {c['tags'].get('views', '')!r})")
    for rest in by_view.values():
        for c in rest:
            rows[c["key"]]["reason"] = f"not needed: {count} already selected"
    return [rows[c["key"]] for c in candidates]


def _tag_columns(c: dict) -> dict:
    t = c.get("tags", {})
    return {"view": t.get("views", ""), "pose": t.get("poses", ""), "expression": t.get("expressions", ""),
            "framing": t.get("framings", ""), "background": t.get("backgrounds", "")}


def _score_columns(c: dict) -> dict:
    s = c["score"]
    return {"sharpness": s.get("sharpness", ""), "phash": s.get("phash", ""),
            "width": s.get("width", ""), "height": s.get("height", "")}


def to_tsv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, delimiter="\t", lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "selected": "yes" if r["selected"] else "no"})
    return buf.getvalue()


def read_tsv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{**r, "selected": r["selected"] == "yes"} for r in csv.DictReader(f, delimiter="\t")]


def selected_keys(path) -> list[str]:
    return [r["key"] for r in read_tsv(path) if r["selected"]]
