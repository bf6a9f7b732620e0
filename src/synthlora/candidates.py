"""The candidates of one character, as selection takes them: one per picture, each with its
source file, its planned tags, its measures, its embedding, and what the caption model saw.

Read from the files the rules wrote (plan.json, images/{key}.json, scores/{key}*.json), so the
select script stays a few lines. No torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthlora.generation import is_failed
from synthlora.io import read_json


def load_candidates(plan_path: str | Path, provenance: list[str | Path], scores: list[str | Path],
                    embeddings: list[str | Path], answers: list[str | Path] | None = None,
                    observed: list[str | Path] | None = None) -> list[dict[str, Any]]:
    """One candidate per planned key (lists in plan order, one file per key). Your own files that
    are byte-identical to another are not candidates of their own: the plan lists them under the
    one candidate (``copies``), and the selection reports them as identical copies."""
    plan = read_json(plan_path)
    copies = plan.get("identical_files", {})
    out, seen = [], set()
    for i, (prov_path, score_path, emb_path) in enumerate(zip(provenance, scores, embeddings)):
        prov = read_json(prov_path)
        shot = prov["shot"]
        if shot["key"] in seen:  # a plan from before identical files were merged lists a key twice
            continue
        seen.add(shot["key"])
        score = read_json(score_path)
        c = {"key": shot["key"], "tags": shot.get("tags") or {}, "source": prov.get("source", "generated"),
             "file": prov.get("origin") or shot.get("source_file", ""), "copies": copies.get(shot["key"], []),
             "score": score, "vector": read_json(emb_path).get("vector"),
             "failed": prov.get("reason", "generation failed") if is_failed(prov) else None,
             "notes": prov.get("converted") or score.get("converted") or []}
        if shot.get("backend") == "folder":
            c["source"] = "folder"
        if answers:
            asked = read_json(answers[i])
            # {"answers": {question: yes/no}, "must_preserve": {question: feature}}; an older file is the answers alone
            c["answers"] = asked["answers"] if "answers" in asked else asked
            c["must_preserve"] = asked.get("must_preserve", {})
        if observed:
            seen_tags = read_json(observed[i])
            c["observed"] = seen_tags.get("tags") or {}
        out.append(c)
    return out


def load_reference(image_path: str | Path, embedding_path: str | Path | None = None) -> dict[str, Any]:
    """The reference image's perceptual hashes (of it and of its mirror image, each with its small
    crops) and its embedding: what the near-copy guard compares every candidate with."""
    import imagehash
    from PIL import ImageOps

    from synthlora.intake import open_picture
    from synthlora.score import HASH_SIZE, crop_hashes

    image, _ = open_picture(Path(image_path))
    mirrored = ImageOps.mirror(image)
    ref = {"phash": str(imagehash.phash(image)),
           "phash256": str(imagehash.phash(image, hash_size=HASH_SIZE)), "phash256_crops": crop_hashes(image),
           "mirrored_phash256": str(imagehash.phash(mirrored, hash_size=HASH_SIZE)),
           "mirrored_phash256_crops": crop_hashes(mirrored)}
    if embedding_path:
        ref["vector"] = read_json(embedding_path).get("vector")
    return ref
