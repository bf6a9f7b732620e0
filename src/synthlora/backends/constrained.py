"""Schema-constrained JSON decoding for any transformers causal or vision-language model.

The JSON structure (braces, keys, commas, enum values) is forced token by token; the model
chooses only what a schema leaves open: string contents, array lengths, enum members. The
result is valid against the schema by construction, even from random weights. It works as a
``LogitsProcessor``, so ``model.generate`` keeps each architecture's own caching and position
handling (Llava, Qwen-VL, Gemma …).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generator

import torch
from transformers import LogitsProcessor


@dataclass
class DecodeLimits:
    max_string_tokens: int = 48
    max_items: int = 8


class Vocabulary:
    """Per-token text pieces and the masks the walker needs, computed once per tokenizer."""

    def __init__(self, tokenizer, size: int):
        self.tokenizer = tokenizer
        self.size = size
        special = set(tokenizer.all_special_ids)
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        self.pieces: list[str | None] = [None] * size
        string_ok = torch.zeros(size, dtype=torch.bool)
        for tid, tok in enumerate(tokens):
            if tok is None or tid in special or tid >= size:
                continue
            piece = tokenizer.convert_tokens_to_string([tok])
            if tok.startswith("▁") and not piece.startswith(" "):
                piece = " " + piece  # SentencePiece drops the word-start space of a lone token
            self.pieces[tid] = piece
            if piece and "\ufffd" not in piece and all(c.isprintable() and c not in '"\\' for c in piece):
                string_ok[tid] = True
        self.string_ok = string_ok
        self.lengths = torch.tensor([len(p) if p else 0 for p in self.pieces], dtype=torch.long)
        self.quote = self.encode('"')[0] if len(self.encode('"')) == 1 else None

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


class SchemaWalker:
    """A generator over a JSON schema: yields the allowed token ids, receives the chosen one."""

    def __init__(self, vocab: Vocabulary, schema: dict, limits: DecodeLimits):
        self.vocab = vocab
        self.schema = schema
        self.limits = limits
        self.text: list[str] = []

    # Each helper is a generator; `yield mask` hands back the token the model picked.
    def _force(self, text: str) -> Generator:
        for tid in self.vocab.encode(text):
            yield self._only([tid])
        self.text.append(text)

    def _only(self, ids) -> torch.Tensor:
        mask = torch.zeros(self.vocab.size, dtype=torch.bool)
        mask[list(ids)] = True
        return mask

    def _string(self, schema: dict) -> Generator:
        yield from self._force('"')
        max_chars = schema.get("maxLength", 10**9)
        min_chars = schema.get("minLength", 1)
        quote = self.vocab.quote
        chars: list[str] = []
        length = 0
        for _ in range(self.limits.max_string_tokens):
            mask = self.vocab.string_ok & (self.vocab.lengths <= max_chars - length)
            if quote is not None and length >= min_chars:
                mask[quote] = True
            if not mask.any():
                break
            tid = yield mask
            if tid == quote:
                self.text.append("".join(chars) + '"')
                return
            chars.append(self.vocab.pieces[tid])
            length += len(chars[-1])
        self.text.append("".join(chars))
        yield from self._force('"')

    def _choice(self, options: list[Any]) -> Generator:
        """Pick one of ``options`` (JSON values) by walking a trie of their tokens."""
        encoded = [(json.dumps(o, ensure_ascii=False), self.vocab.encode(json.dumps(o, ensure_ascii=False))) for o in options]
        alive = list(encoded)
        pos = 0
        while True:
            done = [e for e in alive if len(e[1]) == pos]
            if done and len(alive) == 1:
                self.text.append(done[0][0])
                return
            nxt = {e[1][pos] for e in alive if len(e[1]) > pos}
            if done and not nxt:
                self.text.append(done[0][0])
                return
            tid = yield self._only(nxt)
            alive = [e for e in alive if len(e[1]) > pos and e[1][pos] == tid]
            pos += 1

    def _value(self, schema: dict) -> Generator:
        if "enum" in schema:
            yield from self._choice(schema["enum"])
            return
        if "const" in schema:
            yield from self._force(json.dumps(schema["const"], ensure_ascii=False))
            return
        kind = schema.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind == "object":
            yield from self._object(schema)
        elif kind == "array":
            yield from self._array(schema)
        elif kind == "string":
            yield from self._string(schema)
        elif kind == "boolean":
            yield from self._choice([True, False])
        elif kind == "integer":
            lo, hi = schema.get("minimum", 0), schema.get("maximum", 9)
            yield from self._choice(list(range(int(lo), int(min(hi, lo + 99)) + 1)))
        elif kind == "number":
            lo = schema.get("minimum", 0)
            yield from self._choice([lo + i / 10 for i in range(11)])
        elif kind == "null":
            yield from self._force("null")
        else:
            raise ValueError(f"constrained decoding does not support schema type {kind!r}")

    def _object(self, schema: dict) -> Generator:
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        keys = [k for k in props if k in required] + [k for k in props if k not in required]
        yield from self._force("{")
        for i, key in enumerate(keys):
            yield from self._force((", " if i else "") + json.dumps(key) + ": ")
            yield from self._value(props[key])
        yield from self._force("}")

    def _array(self, schema: dict) -> Generator:
        items = schema.get("items", {"type": "string"})
        lo = max(1, schema.get("minItems", 1))
        hi = min(schema.get("maxItems", self.limits.max_items), self.limits.max_items)
        hi = max(hi, lo)
        yield from self._force("[")
        count = 0
        while True:
            yield from self._value(items)
            count += 1
            if count >= hi:
                break
            if count >= lo:
                comma, close = self.vocab.encode(","), self.vocab.encode("]")
                tid = yield self._only([comma[0], close[0]])
                if tid == close[0]:
                    self.text.append("]")
                    return
                self.text.append(",")
                yield from self._force(" ")
            else:
                yield from self._force(", ")
        yield from self._force("]")

    def walk(self) -> Generator:
        yield from self._value(self.schema)

    def result(self) -> str:
        return "".join(self.text)


class SchemaLogitsProcessor(LogitsProcessor):
    """Drives a ``SchemaWalker`` from ``generate``: masks every token the schema forbids."""

    def __init__(self, walker: SchemaWalker, eos_token_id: int):
        self.walker = walker
        self.gen = walker.walk()
        self.eos = eos_token_id
        self.started = False
        self.finished = False

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = self._next_mask(int(input_ids[0, -1]))
        width = scores.shape[-1]
        full = torch.zeros(width, dtype=torch.bool)
        n = min(width, mask.shape[0])
        full[:n] = mask[:n]
        return scores.masked_fill(~full.to(scores.device), float("-inf"))

    def _next_mask(self, last_token: int) -> torch.Tensor:
        if self.finished:
            return self.walker._only([self.eos])
        try:
            if not self.started:
                self.started = True
                return next(self.gen)
            return self.gen.send(last_token)
        except StopIteration:
            self.finished = True
            return self.walker._only([self.eos])


def max_tokens_bound(schema: dict, limits: DecodeLimits, depth: int = 0) -> int:
    """A generous upper bound on the tokens a walk can take (for ``max_new_tokens``)."""
    if "enum" in schema or "const" in schema:
        return 64
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return 8 + sum(16 + max_tokens_bound(s, limits, depth + 1) for s in schema.get("properties", {}).values())
    if kind == "array":
        hi = min(schema.get("maxItems", limits.max_items), limits.max_items)
        return 8 + hi * (4 + max_tokens_bound(schema.get("items", {}), limits, depth + 1))
    return limits.max_string_tokens + 8
