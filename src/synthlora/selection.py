"""Choose K of N candidates, with a reason on every row.

Order of checks, each a reason a practitioner would give when sorting by eye:
overrides (force-exclude) → generation failed (recorded in provenance) →
undecodable / wrong size → near-copy of the reference (the rights
promise: never overridable) → failure detectors (burnt-in text, more than one figure, wrong
background, blur, noise) → off-identity (far from the most cohesive identity cluster, as in
The Chosen One) → near-duplicate of a better image → among the blurriest → chosen greedily for
coverage of views, poses, expressions and framings, ties broken by quality → beyond the count.
Force-included keys take their slots first.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

# Other code reads the first three columns (read_tsv / selected_keys); measures follow.
COLUMNS = ["key", "selected", "reason", "score", "source", "view", "pose", "expression", "framing",
           "background", "identity", "cluster", "reference_similarity", "reference_phash_distance",
           "sharpness", "noise", "text", "figures", "border_rgb", "answers", "phash", "width", "height"]
TAG_COLUMNS = {"views": "view", "poses": "pose", "expressions": "expression", "framings": "framing",
               "backgrounds": "background"}


class OverridesError(ValueError):
    pass


def hamming(a: str, b: str) -> int:
    return bin(int(a, 16) ^ int(b, 16)).count("1")


def _hash_array(hexes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in hexes], dtype=np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.unpackbits(x.view(np.uint8).reshape(len(x), 8), axis=1).sum(1)


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


def _percentile_ranks(values: list[float], higher_is_better: bool = True) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return np.ones(len(v))
    order = np.argsort(np.argsort(v if higher_is_better else -v, kind="stable"), kind="stable")
    return order / (len(v) - 1)


def select(candidates: list[dict[str, Any]], settings: dict[str, Any], expected_size: tuple[int, int] | None = None,
           reference: dict[str, Any] | None = None, overrides: dict[str, set[str]] | None = None) -> list[dict[str, Any]]:
    """``candidates``: dicts with ``key``, ``tags`` (from provenance), ``score`` (scores/{key}.json),
    optionally ``vector`` (identity embedding) and ``source``. ``settings``: the ``select`` config.
    ``reference``: ``phash`` and optionally ``vector`` of the character's reference image.

    Returns one row per candidate in candidate order; every row has a reason."""
    s = settings
    count = int(s["count"])
    overrides = overrides or {"include": set(), "exclude": set()}
    reference = reference or {}
    rows = {c["key"]: {"key": c["key"], "selected": False, "reason": "", "score": "",
                       "source": c.get("source", "generated"), **_tag_columns(c), **_score_columns(c)}
            for c in candidates}
    problems: dict[str, list[str]] = {c["key"]: [] for c in candidates}
    forbidden: set[str] = set()  # may not be selected even by an override

    vectors = {}
    for c in candidates:
        if c.get("vector") is not None:
            v = np.asarray(c["vector"], dtype=np.float64)
            vectors[c["key"]] = v / (np.linalg.norm(v) or 1.0)
    ref_vec = None
    if reference.get("vector") is not None:
        ref_vec = np.asarray(reference["vector"], dtype=np.float64)
        ref_vec /= np.linalg.norm(ref_vec) or 1.0

    usable = []
    for c in candidates:
        key, sc, row = c["key"], c["score"], rows[c["key"]]
        if c.get("failed"):
            problems[key].append(f"generation failed: {c['failed']}")
            forbidden.add(key)
            continue
        if not sc.get("decodes"):
            problems[key].append(f"undecodable image ({sc.get('error', 'unknown error')})")
            forbidden.add(key)
            continue
        if expected_size and (sc["width"], sc["height"]) != tuple(expected_size):
            problems[key].append(f"wrong size {sc['width']}x{sc['height']} (expected {expected_size[0]}x{expected_size[1]})")
            forbidden.add(key)
            continue
        # Near-copy of the reference: perceptual hash or embedding, either one suffices.
        if reference.get("phash"):
            d = hamming(reference["phash"], sc["phash"])
            row["reference_phash_distance"] = d
            if d <= s["near_copy_max_phash_distance"]:
                problems[key].append(f"near-copy of reference (phash distance {d} <= {s['near_copy_max_phash_distance']})")
                forbidden.add(key)
        if ref_vec is not None and key in vectors:
            sim = float(vectors[key] @ ref_vec)
            row["reference_similarity"] = round(sim, 4)
            if sim >= s["near_copy_min_similarity"] and key not in forbidden:
                problems[key].append(f"near-copy of reference (embedding similarity {sim:.3f} >= {s['near_copy_min_similarity']})")
                forbidden.add(key)
        problems[key] += detector_problems(c, s)
        usable.append(c)

    # Identity: cluster the candidates that passed every check so far; the main cluster's centre
    # is the character as the generator draws it.
    clean = [c for c in usable if not problems[c["key"]] and c["key"] in vectors]
    identity: dict[str, float] = {}
    if len(clean) >= 2:
        labels, main, centre, cohesion = identity_clusters(np.stack([vectors[c["key"]] for c in clean]),
                                                           s["identity_cluster_distance"])
        n_main = int((labels == main).sum())
        for c, label in zip(clean, labels):
            rows[c["key"]]["cluster"] = "main" if label == main else int(label)
        for c in usable:
            if c["key"] in vectors:
                identity[c["key"]] = sim = float(vectors[c["key"]] @ centre)
                rows[c["key"]]["identity"] = round(sim, 4)
                if sim < s["min_identity_similarity"] and not problems[c["key"]]:
                    problems[c["key"]].append(
                        f"off-identity (similarity {sim:.3f} to the main identity cluster of {n_main}, "
                        f"cohesion {cohesion:.3f}, < {s['min_identity_similarity']})")

    # Quality for ranking and tie-breaks: sharp, clean, on-identity.
    quality = {}
    if usable:
        parts = [_percentile_ranks([c["score"]["sharpness"] for c in usable]),
                 _percentile_ranks([c["score"].get("noise", 0.0) for c in usable], higher_is_better=False)]
        if len(identity) == len(usable):
            parts.append(_percentile_ranks([identity[c["key"]] for c in usable]))
        for c, q in zip(usable, np.mean(parts, axis=0)):
            quality[c["key"]] = float(q)
            rows[c["key"]]["score"] = round(float(q), 4)

    excluded = overrides["exclude"]
    passed = [c for c in usable if not problems[c["key"]] and c["key"] not in excluded]

    # Near-duplicates: of each close pair the better one stays.
    passed.sort(key=lambda c: (-quality[c["key"]], c["key"]))
    kept: list[dict] = []
    kept_hashes = np.zeros(len(passed), dtype=np.uint64)
    all_hashes = _hash_array([c["score"]["phash"] for c in passed]) if passed else kept_hashes
    for i, c in enumerate(passed):
        if kept:
            dist = _popcount(kept_hashes[:len(kept)] ^ all_hashes[i])
            j = int(np.argmin(dist))
            if dist[j] <= s["max_duplicate_distance"]:
                problems[c["key"]].append(f"near-duplicate of {kept[j]['key']} (phash distance {int(dist[j])} "
                                          f"<= {s['max_duplicate_distance']})")
                continue
        kept_hashes[len(kept)] = all_hashes[i]
        kept.append(c)

    # The blurriest fraction goes (never so many that fewer than `count` remain).
    n_drop = min(int(len(kept) * s["blur_drop_fraction"]), max(0, len(kept) - count))
    if n_drop:
        blurry = sorted(kept, key=lambda c: (c["score"]["sharpness"], c["key"]))[:n_drop]
        cutoff = blurry[-1]["score"]["sharpness"]
        for c in blurry:
            problems[c["key"]].append(f"among the blurriest {s['blur_drop_fraction']:.0%} "
                                      f"(sharpness {c['score']['sharpness']:.1f} <= {cutoff:.1f})")
        blurry_keys = {c["key"] for c in blurry}
        kept = [c for c in kept if c["key"] not in blurry_keys]

    # Forced includes first (a near-copy or a broken file never), then greedy coverage.
    by_key = {c["key"]: c for c in candidates}
    chosen = []
    for key in sorted(overrides["include"]):
        if key in forbidden:
            problems[key].append("force-include refused: no trace of the reference, and no broken file, "
                                 "may reach the dataset")
            continue
        prior = "; ".join(problems[key])
        rows[key]["reason"] = "force-included by overrides file" + (f" (would have been rejected: {prior})" if prior else "")
        chosen.append(by_key[key])
    dims = [d for d in s["coverage"]]
    counts: dict[str, dict[str, int]] = {d: {} for d in dims}

    def take(c):
        for d in dims:
            tag = c["tags"].get(d, "")
            counts[d][tag] = counts[d].get(tag, 0) + 1

    for c in chosen:
        take(c)
    pool = [c for c in kept if c["key"] not in overrides["include"]]
    while len(chosen) < count and pool:
        def gain(c):
            return sum(1.0 / (1 + counts[d].get(c["tags"].get(d, ""), 0)) for d in dims)
        best = max(pool, key=lambda c: (round(gain(c), 9), quality[c["key"]], c["key"]))
        pool.remove(best)
        spread = ", ".join(f"{TAG_COLUMNS.get(d, d)} {best['tags'][d]!r} #{counts[d].get(best['tags'][d], 0) + 1}"
                           for d in dims if best["tags"].get(d))
        rows[best["key"]]["reason"] = f"selected (quality {quality[best['key']]:.2f}" + (f"; coverage: {spread})" if spread else ")")
        take(best)
        chosen.append(best)
    for c in chosen:
        rows[c["key"]]["selected"] = True
    for c in pool:
        problems[c["key"]].append(f"not needed: {count} already selected (quality {quality[c['key']]:.2f})")
    for key in excluded:
        problems[key].insert(0, "excluded by overrides file")
    for key, row in rows.items():
        if not row["selected"]:
            row["reason"] = "; ".join(problems[key]) or "rejected"
    return [rows[c["key"]] for c in candidates]


def text_problem(sc: dict, max_text_chars: int) -> str | None:
    """Burnt-in text or a watermark: more OCR characters than allowed (None when OCR was off)."""
    if sc.get("text_chars") is not None and sc["text_chars"] > max_text_chars:
        return (f"burnt-in text or watermark (OCR read {' '.join(sc['text_words'])!r}: "
                f"{sc['text_chars']} characters > {max_text_chars})")
    return None


def figures_problem(sc: dict, max_figures: int) -> str | None:
    """More separate figures on the backdrop than allowed."""
    if sc.get("figures") is not None and sc["figures"] > max_figures:
        return f"more than one figure ({sc['figures']} separate figures > {max_figures})"
    return None


def detector_problems(c: dict, s: dict) -> list[str]:
    """The failure-mode detectors, each a measure from scoring against a threshold from config."""
    sc = c["score"]
    out = [p for p in (text_problem(sc, s["max_text_chars"]), figures_problem(sc, s["max_figures"])) if p]
    if sc.get("figures") == 0:
        out.append("no figure found (the image is background only)")
    wanted = c["tags"].get("backgrounds")
    colour = s["background_colors"].get(wanted) if wanted else None
    if colour is not None and sc.get("border_rgb") is not None:
        d = float(np.linalg.norm(np.asarray(sc["border_rgb"]) - np.asarray(colour)))
        if d > s["max_background_distance"]:
            out.append(f"background is not the {wanted!r} the shot asked for (border colour "
                       f"{[round(v) for v in sc['border_rgb']]}, distance {d:.0f} > {s['max_background_distance']})")
    for question, answer in sorted((c.get("answers") or {}).items()):
        if s["vlm_questions"].get(question) == answer:
            out.append(f"the VLM answered {answer!r} to {question!r}")
    if sc["sharpness"] < s["min_sharpness"]:
        out.append(f"blurred (sharpness {sc['sharpness']:.1f} < {s['min_sharpness']})")
    if sc.get("noise") is not None and sc["noise"] > s["max_noise"]:
        out.append(f"noisy (noise sigma {sc['noise']:.1f} > {s['max_noise']})")
    return out


def ask_yes_no(captioner, image, questions: list[str]) -> dict[str, str]:
    """Each question answered 'yes' or 'no' by a vision-language model whose answer is
    constrained to those two words (the Captioner interface: one choice per category)."""
    vocabulary = {f"answer_{i + 1}": ["yes", "no"] for i in range(len(questions))}
    instruction = "Answer each question about this image with yes or no.\n" + "\n".join(
        f"answer_{i + 1}: {q}" for i, q in enumerate(questions))
    picked = captioner.tag(image, vocabulary, instruction)
    return {q: picked[f"answer_{i + 1}"] for i, q in enumerate(questions)}


def _tag_columns(c: dict) -> dict:
    t = c.get("tags", {})
    return {col: t.get(dim, "") for dim, col in TAG_COLUMNS.items()}


def _score_columns(c: dict) -> dict:
    s = c["score"]
    colour = s.get("border_rgb")
    return {"sharpness": s.get("sharpness", ""), "noise": s.get("noise", ""), "phash": s.get("phash", ""),
            "text": " ".join(s.get("text_words") or []), "figures": s.get("figures", ""),
            "border_rgb": "" if colour is None else ",".join(str(round(v)) for v in colour),
            "width": s.get("width", ""), "height": s.get("height", ""), "identity": "", "cluster": "",
            "answers": "; ".join(f"{q} {a}" for q, a in sorted((c.get("answers") or {}).items())),
            "reference_similarity": "", "reference_phash_distance": ""}


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


def contact_sheet(rows: list[dict], images: dict[str, str | Path], out: str | Path, thumb: int = 128,
                  columns: int = 8) -> None:
    """Every candidate as a thumbnail, framed green (selected) or red (rejected), with its reason."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont, ImageOps

    from synthlora.io import atomic_path

    font = ImageFont.load_default(size=10)
    text_h = 52
    cols = max(1, min(columns, len(rows)))
    n_rows = max(1, -(-len(rows) // cols))
    sheet = Image.new("RGB", (cols * (thumb + 8), n_rows * (thumb + 8 + text_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, row in enumerate(rows):
        x, y = (i % cols) * (thumb + 8), (i // cols) * (thumb + 8 + text_h)
        colour = (30, 160, 60) if row["selected"] else (200, 40, 40)
        draw.rectangle([x, y, x + thumb + 7, y + thumb + 7], fill=colour)
        try:
            with Image.open(images[row["key"]]) as im:
                im = ImageOps.contain(im.convert("RGB"), (thumb, thumb), Image.NEAREST)
                sheet.paste(im, (x + 4, y + 4))
        except Exception:  # an undecodable candidate is shown as its frame and reason only
            pass
        label = f"{row['key'][:8]} {'KEEP' if row['selected'] else 'DROP'}: {row['reason']}"
        lines = textwrap.wrap(label, width=max(10, thumb // 6))[:4]
        draw.multiline_text((x + 2, y + thumb + 9), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=1)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
