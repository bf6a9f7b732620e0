"""Choose K of N candidates, with a reason on every row.

A candidate is one picture (identical files are one candidate, their copies listed on its row),
from the generator or from your folder, with its measures (rule ``score``), its identity
embedding (rule ``embed``) and, where observed, the tags the caption model sees in it (rule
``observe``). Selection runs, like a practitioner sorting by eye:

1. ``CHECKS``, in order: small named checks, each ``(candidate, settings) -> reason | None``. A
   gate (no picture, wrong size) skips the rest, since nothing else can be measured; every
   other failing check adds its reason. Evaluation reuses the text and figure checks.
2. Set-level steps, in order: identity (far from the most cohesive identity cluster, as in The
   Chosen One), duplicates (one of each group of near-identical pictures stays, the best), the
   blurriest fraction (optional), then a greedy pick for coverage of views, poses, expressions
   and framings, ties broken by quality, up to ``count``.

Force-included keys (overrides file) take their slots first; a near-copy of the reference or an
unreadable file never does. Too few passing pictures are never padded with rejected ones: the
summary says how many passed and why the rest failed, and below ``min_count`` the run stops
before captioning (scripts/select.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np

# Other code reads the first three columns (read_tsv / selected_keys); the rest follow.
COLUMNS = ["key", "selected", "reason", "file", "copies", "failed_checks", "flags", "score", "source", "view", "pose",
           "expression", "framing", "background", "observed", "identity", "cluster", "reference_similarity",
           "reference_phash_distance", "edge_sharpness", "sharpness", "noise", "text", "backdrop_marks", "figures",
           "heads", "border_rgb", "features_checked", "features_missing", "answers", "converted", "phash", "width",
           "height"]
TAG_COLUMNS = {"views": "view", "poses": "pose", "expressions": "expression", "framings": "framing",
               "backgrounds": "background"}
# Names of the set-level reasons, as counted in summaries (beside the checks' names).
NOT_NEEDED, DUPLICATE, IDENTICAL_COPY = "not needed", "near-duplicate", "identical copy"


class OverridesError(ValueError):
    pass


# ---- per-candidate checks ------------------------------------------------------------------------

Check = Callable[[dict, dict], "str | None"]


def check(name: str, gate: bool = False, binding: bool = False):
    """Name a check. ``gate``: when it fails nothing else can be measured, so later checks are
    skipped. ``binding``: no override may select a candidate that fails it."""
    def mark(fn: Check) -> Check:
        fn.check_name, fn.gate, fn.binding = name, gate, binding
        return fn
    return mark


def where(c: dict) -> str:
    """How a reason names a candidate's source: its file for your own images."""
    return f" {c['file']}" if c.get("file") else ""


@check("unreadable", gate=True, binding=True)
def produced(c: dict, s: dict) -> str | None:
    """The generator made a picture, or your file could be read as one."""
    if not c.get("failed"):
        return None
    if c.get("source") == "folder":
        why = c["failed"].removeprefix(f"{c.get('file')}: ") if c.get("file") else c["failed"]
        return f"unreadable file{where(c)}: {why}"
    return f"generation failed: {c['failed']}"


@check("unreadable", gate=True, binding=True)
def decodes(c: dict, s: dict) -> str | None:
    sc = c["score"]
    if sc.get("decodes"):
        return None
    return f"unreadable file{where(c)}: {sc.get('error', 'unknown error')}"


@check("wrong size", gate=True, binding=True)
def planned_size(c: dict, s: dict) -> str | None:
    """A generated picture has the size its shot asked for (your own pictures may have any)."""
    size, sc = s.get("expected_size"), c["score"]
    if size and c.get("source") != "folder" and (sc["width"], sc["height"]) != tuple(size):
        return f"wrong size {sc['width']}x{sc['height']} (expected {size[0]}x{size[1]})"
    return None


@check("too small")
def large_enough(c: dict, s: dict) -> str | None:
    """Its short side is at least select.min_side (default: half the training resolution; a
    smaller picture is enlarged in training and teaches blur)."""
    sc, least = c["score"], s.get("min_side") or 0
    if min(sc["width"], sc["height"]) < least:
        return (f"too small: {sc['width']}x{sc['height']}{where(c)}, short side {min(sc['width'], sc['height'])} "
                f"< select.min_side {least}")
    return None


@check("near-copy of reference", binding=True)
def not_the_reference(c: dict, s: dict) -> str | None:
    """Not the reference image or an edit of it (cropped, mirrored, recoloured): the rights promise."""
    d = c.get("reference_phash_distance")
    if d is not None and d <= s["near_copy_max_phash_distance"]:
        return (f"near-copy of reference (phash distance {d} to the reference"
                f"{', mirrored,' if c.get('reference_mirrored') else ''} or a crop of it <= "
                f"{s['near_copy_max_phash_distance']})")
    sim = c.get("reference_similarity")
    if sim is not None and sim >= s["near_copy_min_similarity"]:
        return f"near-copy of reference (embedding similarity {sim:.3f} >= {s['near_copy_min_similarity']})"
    return None


def text_problem(sc: dict, max_text_chars: int) -> str | None:
    """Burnt-in text or a watermark: more OCR characters than allowed (None when OCR was off)."""
    if sc.get("text_chars") is not None and sc["text_chars"] > max_text_chars:
        return (f"burnt-in text or watermark (OCR read {' '.join(sc['text_words'])!r}: "
                f"{sc['text_chars']} letters and digits > {max_text_chars})")
    return None


def figures_problem(sc: dict, max_figures: int, heads: bool = True) -> str | None:
    """More figures than allowed: separate blobs on the backdrop, or (``heads``) heads on one
    blob's outline (figures that overlap)."""
    if sc.get("figures") is not None and sc["figures"] > max_figures:
        return f"more than one figure ({sc['figures']} separate figures > {max_figures})"
    if heads and sc.get("heads") is not None and sc["heads"] > max_figures:
        return f"more than one figure ({sc['heads']} heads on one outline: figures that overlap, > {max_figures})"
    return None


@check("burnt-in text")
def no_text(c: dict, s: dict) -> str | None:
    return text_problem(c["score"], s["max_text_chars"])


@check("watermark")
def no_watermark(c: dict, s: dict) -> str | None:
    """No faint marks spread over the plain backdrop (a semi-transparent, tiled watermark)."""
    marks = c["score"].get("backdrop_marks")
    if marks is not None and marks > s["max_backdrop_marks"]:
        return (f"watermark: faint marks over {marks:.1%} of the plain backdrop (a semi-transparent, tiled "
                f"watermark?) > {s['max_backdrop_marks']:.1%}")
    return None


@check("more than one figure")
def one_figure(c: dict, s: dict) -> str | None:
    return figures_problem(c["score"], s["max_figures"], s.get("detect_overlapping_figures", True))


@check("no figure")
def has_figure(c: dict, s: dict) -> str | None:
    if c["score"].get("figures") == 0:
        return "no figure found (the image is background only)"
    return None


@check("wrong background")
def right_background(c: dict, s: dict) -> str | None:
    """The border shows the background asked for: the shot's tag, else (your own pictures were asked
    for nothing) the nearest of select.background_colors. An observed tag names what the caption
    model sees, for captions and coverage; whether the backdrop is plain, the border shows."""
    border = c["score"].get("backdrop_rgb", c["score"].get("border_rgb"))
    if border is None:
        return None
    wanted = c["tags"].get("backgrounds")
    colours = s["background_colors"]
    if wanted:
        if wanted not in colours:
            return None
        candidates = {wanted: colours[wanted]}
    else:
        candidates = colours
    if not candidates:
        return None
    distances = {tag: backdrop_distance(border, rgb) for tag, rgb in candidates.items()}
    tag, d = min(distances.items(), key=lambda kv: kv[1])
    if d <= s["max_background_distance"]:
        return None
    colour = [round(v) for v in border]
    if wanted:
        return (f"background is not the {wanted!r} the shot asked for (border colour {colour}, distance {d:.0f} "
                f"> {s['max_background_distance']})")
    return (f"background is none of select.background_colors (border colour {colour}, {d:.0f} from the nearest, "
            f"{tag!r}, > {s['max_background_distance']})")


def backdrop_distance(a, b) -> float:
    """Distance between two backdrop colours: RGB distance with differences of hue weighted 3x. A
    lighter or darker backdrop is the same one under other light; a tinted one (beige wall, blue
    sky) is another backdrop, even when it is as light as a grey one."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    grey = a.mean() - b.mean()
    tint = (a - a.mean()) - (b - b.mean())
    return float(np.sqrt(3 * grey ** 2 + 9 * (tint ** 2).sum()))


@check("blurred")
def sharp(c: dict, s: dict) -> str | None:
    """Its edges are steep for their contrast (edge_sharpness, whatever the amount of detail), and
    optionally its Laplacian variance is high enough (min_sharpness, which grows with detail)."""
    sc = c["score"]
    edge = sc.get("edge_sharpness")
    if edge is not None and edge < s["min_edge_sharpness"]:
        return f"blurred (edge sharpness {edge:.2f} < {s['min_edge_sharpness']})"
    if sc.get("sharpness") is not None and sc["sharpness"] < s["min_sharpness"]:
        return f"blurred (sharpness {sc['sharpness']:.1f} < {s['min_sharpness']})"
    return None


@check("noisy")
def not_noisy(c: dict, s: dict) -> str | None:
    sc = c["score"]
    if sc.get("noise") is not None and sc["noise"] > s["max_noise"]:
        return f"noisy (noise sigma {sc['noise']:.1f} > {s['max_noise']})"
    return None


@check("judged by the VLM")
def vlm_answers(c: dict, s: dict) -> str | None:
    for question, answer in sorted((c.get("answers") or {}).items()):
        if s["vlm_questions"].get(question) == answer:
            return f"the VLM answered {answer!r} to {question!r}"
    return None


def missing_features(c: dict) -> list[str]:
    """Must-preserve features the caption model said the picture lacks (select.feature_checks)."""
    answers = c.get("answers") or {}
    return sorted({f for q, f in (c.get("must_preserve") or {}).items() if answers.get(q) == "no"})


@check("missing a must-preserve feature")
def keeps_must_preserve_features(c: dict, s: dict) -> str | None:
    """Complex designs lose details in generation (seed 000): a picture without one of the features
    that must be preserved would teach the LoRA the wrong character."""
    missing = missing_features(c)
    if missing:
        return f"missing must-preserve feature: {', '.join(missing)} (the caption model answered no)"
    return None


@check("framing drifted")
def framing_as_planned(c: dict, s: dict) -> str | None:
    """A generated picture whose observed framing is not its shot's: the generator drifted, and
    the plan's coverage of framings is off. A flag on its row, or a rejection with
    select.reject_framing_drift."""
    planned, seen = c["tags"].get("framings"), (c.get("observed") or {}).get("framings")
    if planned and seen and planned != seen:
        return f"framing drifted: the caption model sees {seen!r}, the shot asked for {planned!r}"
    return None


# Blur and noise come before the watermark check: a blur's halo and grain also mark the backdrop.
CHECKS: list[Check] = [produced, decodes, planned_size, large_enough, not_the_reference, no_text, sharp, not_noisy,
                       no_watermark, one_figure, has_figure, right_background, vlm_answers,
                       keeps_must_preserve_features]
# Checks whose failure is written on the row but rejects only when the settings say so.
FLAGS: list[Check] = [framing_as_planned]


def failed_checks(c: dict, s: dict, checks: list[Check] = CHECKS) -> list[tuple[Check, str]]:
    """(check, reason) for every check ``c`` fails, in order; after a failed gate, nothing more."""
    out = []
    for chk in checks:
        reason = chk(c, s)
        if reason:
            out.append((chk, reason))
            if chk.gate:
                break
    return out


# ---- perceptual-hash distances ----------------------------------------------------------------
# Distances are in bits of a 256-bit pHash (score.HASH_SIZE). Scores without one (from before it
# was measured) have a 64-bit pHash only; its distance counts 4 per bit.


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def hash_distance(a: str, a_crops: list[str], b: str, b_crops: list[str]) -> int:
    """Perceptual-hash distance that tolerates a small crop: the least of a vs b, a vs b's crops
    and b vs a's crops (score.crop_hashes)."""
    return min([hamming(a, b)] + [hamming(a, x) for x in b_crops] + [hamming(b, x) for x in a_crops])


def hashes_of(sc: dict) -> tuple[str, list[str], int] | None:
    """(hash, crop hashes, bits per counted bit) of a score: the 256-bit one, else the 64-bit one."""
    if sc.get("phash256"):
        return sc["phash256"], sc.get("phash256_crops") or [], 1
    if sc.get("phash"):
        return sc["phash"], [], 4
    return None


def against_reference(c: dict, reference: dict) -> dict:
    """The candidate with its hash distance to the reference and to the reference's mirror image
    (crops of either tolerated), and its embedding similarity to the reference's."""
    c = dict(c)
    mine = hashes_of(c["score"])
    if mine and mine[2] == 1 and reference.get("phash256"):
        d = hash_distance(mine[0], mine[1], reference["phash256"], reference.get("phash256_crops", []))
        dm = hash_distance(mine[0], mine[1], reference["mirrored_phash256"], reference.get("mirrored_phash256_crops", [])) \
            if reference.get("mirrored_phash256") else d + 1
        c["reference_phash_distance"], c["reference_mirrored"] = min(d, dm), dm < d
    elif c["score"].get("phash") and reference.get("phash"):
        c["reference_phash_distance"] = 4 * hamming(c["score"]["phash"], reference["phash"])
    if reference.get("vector") is not None and c.get("vector") is not None:
        c["reference_similarity"] = round(float(_unit(c["vector"]) @ _unit(reference["vector"])), 4)
    return c


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / (np.linalg.norm(v) or 1.0)


# ---- overrides ---------------------------------------------------------------------------------


def load_overrides(path: str | Path | None, known_keys: list[str]) -> dict[str, set[str]]:
    """The per-character overrides file: YAML with optional ``include`` and ``exclude`` lists of
    keys. A key that is not a candidate is an error (a typo would otherwise be ignored)."""
    import yaml

    if not path:
        return {"include": set(), "exclude": set()}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise OverridesError(f"overrides file {path}: not valid YAML ({e})") from None
    if not isinstance(data, dict) or set(data) - {"include", "exclude"}:
        raise OverridesError(f"overrides file {path}: expected a mapping with 'include' and/or 'exclude' "
                             f"lists of image keys, got {data!r}")
    out = {}
    for field in ("include", "exclude"):
        keys = data.get(field) or []
        if not isinstance(keys, list):
            raise OverridesError(f"overrides file {path}: '{field}' must be a list of keys, got {keys!r}")
        unknown = [str(k) for k in keys if str(k) not in set(known_keys)]
        if unknown:
            raise OverridesError(f"overrides file {path}: {field} names {', '.join(unknown)}, which "
                                 f"{'is' if len(unknown) == 1 else 'are'} not a candidate key of this character "
                                 "(see the key column of selection.tsv)")
        out[field] = {str(k) for k in keys}
    both = out["include"] & out["exclude"]
    if both:
        raise OverridesError(f"overrides file {path}: {', '.join(sorted(both))} is both included and excluded; keep one")
    return out


# ---- set-level steps ---------------------------------------------------------------------------


def identity_clusters(vectors: np.ndarray, max_distance: float) -> tuple[np.ndarray, int, np.ndarray, float]:
    """Average-linkage clustering on cosine distance; the main identity is the largest cluster,
    ties going to the most cohesive. Returns (labels, main label, main centre, main cohesion)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    n = len(vectors)
    if n == 1:
        labels = np.array([1])
    else:
        labels = fcluster(linkage(vectors, method="average", metric="cosine"), t=max_distance, criterion="distance")
    best = None
    for label in np.unique(labels):
        members = vectors[labels == label]
        sims = members @ members.T
        m = len(members)
        cohesion = float((sims.sum() - np.trace(sims)) / (m * (m - 1))) if m > 1 else 1.0
        rank = (m, cohesion)
        if best is None or rank > best[0]:
            best = (rank, int(label), cohesion)
    _, main, cohesion = best
    centre = vectors[labels == main].mean(0)
    centre /= np.linalg.norm(centre) or 1.0
    return labels, main, centre, cohesion


def identity_step(state: "Selection") -> None:
    """Cluster the candidates that passed every check by their embeddings; the main cluster's
    centre is the character as the generator draws it; far from it is off-identity."""
    s = state.settings
    vectors = {c["key"]: _unit(c["vector"]) for c in state.usable if c.get("vector") is not None}
    clean = [c for c in state.usable if not state.problems[c["key"]] and c["key"] in vectors]
    if len(clean) < 2:
        return
    labels, main, centre, cohesion = identity_clusters(np.stack([vectors[c["key"]] for c in clean]),
                                                       s["identity_cluster_distance"])
    n_main = int((labels == main).sum())
    for c, label in zip(clean, labels):
        state.rows[c["key"]]["cluster"] = "main" if label == main else int(label)
    for c in state.usable:
        if c["key"] in vectors:
            state.identity[c["key"]] = sim = float(vectors[c["key"]] @ centre)
            state.rows[c["key"]]["identity"] = round(sim, 4)
            if sim < s["min_identity_similarity"] and not state.problems[c["key"]]:
                state.reject(c["key"], "off-identity",
                             f"off-identity (similarity {sim:.3f} to the main identity cluster of {n_main}, "
                             f"cohesion {cohesion:.3f}, < {s['min_identity_similarity']})")


def quality_step(state: "Selection") -> None:
    """Quality for ranking and tie-breaks: steep edges, low noise, on-identity (percentile ranks)."""
    usable = state.usable
    if not usable:
        return
    edges = [c["score"].get("edge_sharpness") for c in usable]
    sharpness = edges if all(e is not None for e in edges) else [c["score"].get("sharpness", 0.0) for c in usable]
    parts = [_percentile_ranks(sharpness),
             _percentile_ranks([c["score"].get("noise", 0.0) for c in usable], higher_is_better=False)]
    if len(state.identity) == len(usable):
        parts.append(_percentile_ranks([state.identity[c["key"]] for c in usable]))
    for c, q in zip(usable, np.mean(parts, axis=0)):
        state.quality[c["key"]] = float(q)
        state.rows[c["key"]]["score"] = round(float(q), 4)


def duplicates_step(state: "Selection") -> None:
    """Of each group of near-identical pictures (perceptual hashes within max_duplicate_distance,
    a small crop of one matching the other: score.crop_hashes) the best stays; the others name it."""
    limit = state.settings["max_duplicate_distance"]
    passed = sorted(state.passed(), key=lambda c: (-state.quality[c["key"]], c["key"]))
    found = [hashes_of(c["score"]) for c in passed]
    if not passed or any(h is None for h in found):
        return
    per_bit = max(h[2] for h in found)
    if per_bit > 1:  # some scores lack the 256-bit hash: compare all by the 64-bit one
        found = [(c["score"]["phash"], [], per_bit) for c in passed]
    hashes = _words([h[0] for h in found])
    n_crops = min(len(h[1]) for h in found)
    crops = np.stack([_words(h[1][:n_crops]) for h in found]) if n_crops else None
    kept: list[int] = []
    for i, c in enumerate(passed):
        if kept:
            k = np.asarray(kept)
            dist = _bits(hashes[k] ^ hashes[i])
            if crops is not None:  # i against each kept one's crops, and each kept one against i's crops
                dist = np.minimum(dist, _bits(crops[k] ^ hashes[i]).min(axis=1))
                dist = np.minimum(dist, _bits(crops[i][None] ^ hashes[k][:, None]).min(axis=1))
            dist = dist * per_bit
            n = int(np.argmin(dist))
            if dist[n] <= limit:
                other = passed[kept[n]]
                state.reject(c["key"], DUPLICATE,
                             f"near-duplicate of {other.get('file') or other['key']} (phash distance {int(dist[n])} "
                             f"<= {limit}; the better of the two stays)")
                continue
        kept.append(i)


def blurriest_step(state: "Selection") -> None:
    """Optionally the blurriest fraction goes (select.blur_drop_fraction; never so many that fewer
    than ``count`` remain). The absolute blur check is the main guard; this is a relative one."""
    s = state.settings
    kept = state.passed()
    n_drop = min(int(len(kept) * s["blur_drop_fraction"]), max(0, len(kept) - int(s["count"])))
    if not n_drop:
        return

    def blur(c):
        e = c["score"].get("edge_sharpness")
        return e if e is not None else c["score"].get("sharpness", 0.0)
    blurry = sorted(kept, key=lambda c: (blur(c), c["key"]))[:n_drop]
    cutoff = blur(blurry[-1])
    for c in blurry:
        state.reject(c["key"], "among the blurriest",
                     f"among the blurriest {s['blur_drop_fraction']:.0%} (sharpness {blur(c):.2f} <= {cutoff:.2f})")


def coverage_step(state: "Selection") -> None:
    """Forced includes first (never a binding failure), then greedily the candidate whose tags
    (observed where observed, else planned) are least represented so far, ties by quality."""
    s = state.settings
    count = int(s["count"])
    include = state.overrides["include"]
    chosen = []
    for key in sorted(include):
        if key in state.binding:
            state.reject(key, "force-include refused", "force-include refused: no trace of the reference, and no "
                         "broken file, may reach the dataset")
            continue
        prior = "; ".join(r for _, r in state.problems[key])
        state.rows[key]["reason"] = "force-included by overrides file" + (f" (would have been rejected: {prior})"
                                                                         if prior else "")
        chosen.append(state.by_key[key])
    dims = list(s["coverage"])
    counts: dict[str, Counter] = {d: Counter() for d in dims}

    def take(c):
        for d in dims:
            counts[d][coverage_tags(c).get(d, "")] += 1

    for c in chosen:
        take(c)
    pool = [c for c in state.passed() if c["key"] not in include]
    while len(chosen) < count and pool:
        def gain(c):
            return sum(1.0 / (1 + counts[d][coverage_tags(c).get(d, "")]) for d in dims)
        best = max(pool, key=lambda c: (round(gain(c), 9), state.quality[c["key"]], c["key"]))
        pool.remove(best)
        tags = coverage_tags(best)
        spread = ", ".join(f"{TAG_COLUMNS.get(d, d)} {tags[d]!r} #{counts[d][tags[d]] + 1}" for d in dims if tags.get(d))
        state.rows[best["key"]]["reason"] = (f"selected (quality {state.quality[best['key']]:.2f}"
                                             + (f"; coverage: {spread})" if spread else ")"))
        take(best)
        chosen.append(best)
    for c in chosen:
        state.rows[c["key"]]["selected"] = True
    for c in pool:
        state.reject(c["key"], NOT_NEEDED, f"not needed: {count} already selected (quality {state.quality[c['key']]:.2f})")


STEPS: list[Callable[["Selection"], None]] = [identity_step, quality_step, duplicates_step, blurriest_step,
                                              coverage_step]


def coverage_tags(c: dict) -> dict:
    """The tags coverage balances: what the caption model observed, where it looked, else the plan's."""
    return {**(c.get("tags") or {}), **(c.get("observed") or {})}


class Selection:
    """The state the set-level steps share: rows, problems per key, quality, identity."""

    def __init__(self, candidates: list[dict], settings: dict, overrides: dict[str, set[str]]):
        self.settings, self.overrides = settings, overrides
        self.by_key = {c["key"]: c for c in candidates}
        self.rows = {c["key"]: _row(c) for c in candidates}
        self.problems: dict[str, list[tuple[str, str]]] = {c["key"]: [] for c in candidates}
        self.binding: set[str] = set()  # may not be selected even by an override
        self.usable: list[dict] = []    # passed the gates: measured, so they can be ranked
        self.quality: dict[str, float] = {}
        self.identity: dict[str, float] = {}

    def reject(self, key: str, name: str, reason: str) -> None:
        self.problems[key].append((name, reason))

    def passed(self) -> list[dict]:
        return [c for c in self.usable if not self.problems[c["key"]] and c["key"] not in self.overrides["exclude"]]


def select(candidates: list[dict[str, Any]], settings: dict[str, Any], expected_size: tuple[int, int] | None = None,
           reference: dict[str, Any] | None = None, overrides: dict[str, set[str]] | None = None,
           checks: list[Check] | None = None) -> list[dict[str, Any]]:
    """``candidates``: dicts with ``key``, ``tags`` (from the plan), ``score`` (scores/{key}.json),
    optionally ``vector`` (identity embedding), ``observed`` (tags the caption model saw),
    ``answers``, ``failed``, ``source``, ``file`` and ``copies`` (synthlora.candidates).
    ``settings``: the ``select`` config (min_side, min_count resolved). ``reference``:
    synthlora.candidates.load_reference().

    Returns one row per candidate in candidate order; every row has a reason."""
    s = {**settings, "expected_size": expected_size if expected_size else settings.get("expected_size")}
    overrides = overrides or {"include": set(), "exclude": set()}
    candidates = [against_reference(c, reference or {}) for c in candidates]
    state = Selection(candidates, s, overrides)
    for c in candidates:
        row = state.rows[c["key"]]
        for name in ("reference_phash_distance", "reference_similarity"):
            row[name] = c.get(name, "")
        failures = failed_checks(c, s, checks or CHECKS)  # a group's: synthlora.groups.group_checks
        for chk, reason in failures:
            state.reject(c["key"], chk.check_name, reason)
            if chk.binding:
                state.binding.add(c["key"])
        flags = failed_checks(c, s, FLAGS)
        row["flags"] = "; ".join(r for _, r in flags)
        if s.get("reject_framing_drift"):
            for chk, reason in flags:
                state.reject(c["key"], chk.check_name, reason)
        if not any(chk.gate for chk, _ in failures):
            state.usable.append(c)
    for step in STEPS:
        step(state)
    for key in overrides["exclude"]:
        state.problems[key].insert(0, ("excluded", "excluded by overrides file"))
    for key, row in state.rows.items():
        names = [n for n, _ in state.problems[key]]
        row["failed_checks"] = ", ".join(dict.fromkeys(names))
        if not row["selected"]:
            row["reason"] = "; ".join(r for _, r in state.problems[key]) or "rejected"
        elif row["flags"]:
            row["reason"] += f"; flagged: {row['flags']}"
    return [state.rows[c["key"]] for c in candidates]


# ---- summary -----------------------------------------------------------------------------------


def min_count_of(settings: dict) -> int:
    """select.min_count, or by default half of select.count (rounded up)."""
    m = settings.get("min_count")
    return int(m) if m is not None else math.ceil(int(settings["count"]) / 2)


def reason_counts(rows: list[dict]) -> Counter:
    """Rejected candidates per first failed check (or set-level step), plus identical copies."""
    reasons: Counter = Counter()
    for r in rows:
        if not r["selected"]:
            reasons[(r.get("failed_checks") or "rejected").split(", ")[0]] += 1
    copies = sum(len([f for f in str(r.get("copies") or "").split("; ") if f]) for r in rows)
    if copies:
        reasons[IDENTICAL_COPY] += copies
    return reasons


def counts_line(rows: list[dict]) -> str:
    """'12 of 40 kept; rejected: burnt-in text 4, blurred 3, ...' for a picture's title."""
    reasons = reason_counts(rows)
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{sum(bool(r['selected']) for r in rows)} of {len(rows)} kept" + (f"; {rejected}" if rejected else "")


def feature_pass_rates(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per must-preserve feature: candidates asked about it, and how many kept it (select.feature_checks)."""
    rates: dict[str, dict[str, int]] = {}
    for r in rows:
        missing = set(filter(None, str(r.get("features_missing") or "").split("; ")))
        for feature in filter(None, str(r.get("features_checked") or "").split("; ")):
            entry = rates.setdefault(feature, {"asked": 0, "kept": 0})
            entry["asked"] += 1
            entry["kept"] += feature not in missing
    return dict(sorted(rates.items()))


def feature_rates_line(rates: dict[str, dict[str, int]]) -> str:
    """'boots 5/8, hair 8/8': how often the generator kept each must-preserve feature."""
    return ", ".join(f"{name} {r['kept']}/{r['asked']}" for name, r in rates.items())


def summary(rows: list[dict], settings: dict) -> dict[str, Any]:
    """What a person needs to act on a selection: how many were kept of how many, how many passed
    every check, why the others failed (counted by their first reason; identical copies too),
    and a warning when fewer than ``count`` passed."""
    count, least = int(settings["count"]), min_count_of(settings)
    reasons = reason_counts(rows)
    copies = reasons.get(IDENTICAL_COPY, 0)
    selected = sum(bool(r["selected"]) for r in rows)
    passed = selected + reasons.get(NOT_NEEDED, 0)
    out = {"candidates": len(rows), "files": len(rows) + copies, "selected": selected, "count": count,
           "passed": passed, "min_count": least,
           "rejected": dict(sorted(((k, v) for k, v in reasons.items() if k != NOT_NEEDED), key=lambda kv: (-kv[1], kv[0]))),
           "not_needed": reasons.get(NOT_NEEDED, 0), "features": feature_pass_rates(rows), "warning": ""}
    if passed < count:
        out["warning"] = (f"only {passed} of {len(rows)} candidates passed every check, fewer than select.count "
                          f"{count}: {selected} selected, none padded with rejected ones")
    return out


def summary_text(summ: dict, character: str = "") -> list[str]:
    """The summary as lines for a log, the end of a run and the report."""
    who = f"{character}: " if character else ""
    lines = [f"{who}selected {summ['selected']} of {summ['candidates']} candidates"
             + (f" ({summ['files']} files: identical copies count once)" if summ["files"] != summ["candidates"] else "")
             + f"; {summ['passed']} passed every check (count {summ['count']}, min_count {summ['min_count']})"]
    if summ["rejected"]:
        lines.append("  rejected: " + ", ".join(f"{name} {n}" for name, n in summ["rejected"].items()))
    if summ.get("features"):
        lines.append("  must-preserve features kept (caption model): " + feature_rates_line(summ["features"]))
    if summ["warning"]:
        lines.append(f"  WARNING: {summ['warning']}")
    return lines


def selection_summary_lines(summary_files: list[str | Path]) -> list[str]:
    """What the end of a run prints per character: kept of total, counts per reason, the warning."""
    import json

    lines = []
    for path in summary_files:
        if Path(path).exists():
            lines += summary_text(json.loads(Path(path).read_text(encoding="utf-8")), Path(path).parent.name)
    return lines


class TooFewImages(RuntimeError):
    pass


def too_few_message(summ: dict, character: str, table: str, sheet: str) -> str:
    """The error that stops a run before captioning: how many passed, why the rest failed, what to do."""
    rejected = "\n".join(f"    {name}: {n}" for name, n in summ["rejected"].items()) or "    (none)"
    return (f"select: only {summ['passed']} of {summ['candidates']} candidates of {character} passed every check, "
            f"fewer than select.min_count = {summ['min_count']} (select.count {summ['count']}). The run stops "
            f"here: no dataset is built and nothing is trained. Rejected, by first reason:\n{rejected}\n"
            f"  Every candidate and why: {table} and {sheet}. Then add candidates (plan.candidates, or files in "
            f"generate.folder), relax the select.* threshold behind the biggest count above, or lower "
            f"select.min_count.")


# ---- tables and pictures -----------------------------------------------------------------------


def _percentile_ranks(values: list[float], higher_is_better: bool = True) -> np.ndarray:
    """Ranks scaled to 0..1 (best 1); equal values share their rank."""
    from scipy.stats import rankdata

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return np.ones(len(v))
    return (rankdata(v if higher_is_better else -v, method="average") - 1) / (len(v) - 1)


def _words(hexes: list[str]) -> np.ndarray:
    """Hex hashes as rows of uint64 words (a 256-bit hash: 4 words)."""
    n = max(1, len(hexes[0]) // 16) if hexes else 1
    return np.array([[int(h[16 * i:16 * (i + 1)], 16) for i in range(n)] for h in hexes], dtype=np.uint64).reshape(-1, n)


def _bits(x: np.ndarray) -> np.ndarray:
    """Set bits per hash: summed over the last axis (the words)."""
    x = np.asarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).sum(-1).astype(np.int64)
    return np.unpackbits(x.reshape(-1, 1).view(np.uint8), axis=1).sum(1).reshape(x.shape).sum(-1)


def ask_yes_no(captioner, image, questions: list[str]) -> dict[str, str]:
    """Each question answered 'yes' or 'no' by a vision-language model whose answer is
    constrained to those two words (the Captioner interface: one choice per category)."""
    vocabulary = {f"answer_{i + 1}": ["yes", "no"] for i in range(len(questions))}
    instruction = "Answer each question about this image with yes or no.\n" + "\n".join(
        f"answer_{i + 1}: {q}" for i, q in enumerate(questions))
    picked = captioner.tag(image, vocabulary, instruction)
    return {q: picked[f"answer_{i + 1}"] for i, q in enumerate(questions)}


def _row(c: dict) -> dict:
    t, sc = c.get("tags") or {}, c["score"]
    colour = sc.get("border_rgb")
    return {"key": c["key"], "selected": False, "reason": "", "score": "", "source": c.get("source", "generated"),
            "file": c.get("file", ""), "copies": "; ".join(c.get("copies") or []), "failed_checks": "", "flags": "",
            **{col: t.get(dim, "") for dim, col in TAG_COLUMNS.items()},
            "observed": ", ".join(f"{k}: {v}" for k, v in sorted((c.get("observed") or {}).items())),
            "edge_sharpness": _blank(sc.get("edge_sharpness")), "sharpness": _blank(sc.get("sharpness")),
            "noise": _blank(sc.get("noise")), "phash": sc.get("phash", ""),
            "text": " ".join(sc.get("text_words") or []), "backdrop_marks": _blank(sc.get("backdrop_marks")),
            "figures": _blank(sc.get("figures")), "heads": _blank(sc.get("heads")),
            "border_rgb": "" if colour is None else ",".join(str(round(v)) for v in colour),
            "width": _blank(sc.get("width")), "height": _blank(sc.get("height")), "identity": "", "cluster": "",
            "features_checked": "; ".join(sorted(set((c.get("must_preserve") or {}).values()))),
            "features_missing": "; ".join(missing_features(c)),
            "answers": "; ".join(f"{q} {a}" for q, a in sorted((c.get("answers") or {}).items())),
            "converted": "; ".join(c.get("notes") or sc.get("converted") or []),
            "reference_similarity": "", "reference_phash_distance": ""}


def _blank(v):
    return "" if v is None else v


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


def tile_label(row: dict) -> str:
    """What a contact-sheet tile says: the file name (your own images) or the key, and the whole reason."""
    name = Path(row["file"]).name if row.get("file") else row["key"]
    copies = [f for f in str(row.get("copies", "")).split("; ") if f]
    also = f" (+ identical {', '.join(Path(f).name for f in copies)})" if copies else ""
    return f"{name}{also} {'KEEP' if row['selected'] else 'DROP'}: {row['reason']}"


def contact_sheet(rows: list[dict], images: dict[str, str | Path], out: str | Path, thumb: int = 128,
                  columns: int = 8, title: str = "", summ: dict | None = None) -> list[tuple[int, int]]:
    """Every candidate as a thumbnail, framed green (selected) or red (rejected), labelled with its
    file name (or key) and its whole reason, wrapped; a header with kept/total and the counts per
    reason. An undecodable candidate is shown as its frame and reason. Returns each tile's top-left
    corner, in row order."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont, ImageOps

    from synthlora.intake import PictureProblem, open_picture
    from synthlora.io import atomic_path

    font = ImageFont.load_default(size=10)
    width = max(10, (thumb + 4) // 6)
    labels = [textwrap.wrap(tile_label(r), width=width) for r in rows]
    line_h = 12
    text_h = max(4, max((len(lines) for lines in labels), default=4)) * line_h + 4
    cols = max(1, min(columns, len(rows)))
    n_rows = max(1, -(-len(rows) // cols))
    header = []
    if summ is not None or title:
        header = textwrap.wrap(title, width=cols * (thumb + 8) // 6) if title else []
        if summ is not None:
            header += [line.strip() for text in summary_text(summ) for line in
                       textwrap.wrap(text, width=cols * (thumb + 8) // 6)]
    head_h = len(header) * 14 + (8 if header else 0)
    sheet = Image.new("RGB", (cols * (thumb + 8), head_h + n_rows * (thumb + 8 + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    if header:
        draw.multiline_text((4, 4), "\n".join(header), fill=(0, 0, 0), font=ImageFont.load_default(size=12), spacing=2)
    corners = []
    for i, (row, lines) in enumerate(zip(rows, labels)):
        x, y = (i % cols) * (thumb + 8), head_h + (i // cols) * (thumb + 8 + text_h)
        corners.append((x, y))
        colour = (30, 160, 60) if row["selected"] else (200, 40, 40)
        draw.rectangle([x, y, x + thumb + 7, y + thumb + 7], fill=colour)
        try:
            im, _ = open_picture(Path(images[row["key"]]))
            sheet.paste(ImageOps.contain(im, (thumb, thumb), Image.NEAREST), (x + 4, y + 4))
        except (PictureProblem, OSError, KeyError):
            pass
        draw.multiline_text((x + 2, y + thumb + 9), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=2)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return corners
