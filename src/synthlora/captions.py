"""Captions in the kohya style: trigger word first, then comma-separated tags."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def format_caption(trigger: str, always: list[str], tags: dict[str, str], categories: list[str]) -> str:
    ordered = [trigger, *always, *(tags[c] for c in categories if tags.get(c))]
    seen, out = set(), []
    for t in ordered:
        t = t.strip()
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    return ", ".join(out)


def parse_caption(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def tag_frequency(caption_files: list[str | Path]) -> dict[str, int]:
    """Tag → number of captions containing it, most frequent first (seed 000's chart)."""
    counts: Counter[str] = Counter()
    for f in caption_files:
        counts.update(set(parse_caption(Path(f).read_text(encoding="utf-8"))))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
