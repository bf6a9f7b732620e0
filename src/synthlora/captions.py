"""Captions in the kohya style: trigger word first, then comma-separated tags."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

# kohya sd-scripts reads this many caption tokens when max_token_length is not set (train.toml
# does not set it): CLIP's 77 less the start and end tokens. Tokens past it are not trained on.
SD_SCRIPTS_CAPTION_TOKENS = 75
# CLIP's pre-tokenizer (its regex, with \p{L} and \p{N} in Python's terms): each piece is at least one token.
_CLIP_PIECES = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+")


def clip_tokens_at_least(text: str) -> int:
    """A lower bound of the CLIP tokens of ``text`` without loading a tokenizer: its word and
    punctuation pieces (a common English word is one token; a rare one is several)."""
    return len(_CLIP_PIECES.findall(text.lower()))


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
