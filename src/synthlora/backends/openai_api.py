"""``openai`` backends: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama, LocalAI …).

- analyze: chat completions with the reference image as a data URL and structured output under
  the feature schema (converted to what strict mode accepts; the answer is validated anyway).
- caption: chat completions, one tag per category, each constrained to its vocabulary (enum).
- generate: the Images API (``images.generate``, or ``images.edit`` with the reference image
  when reference mode is on) → a PNG and a provenance record.

Faults: the client itself retries 408/409/429/5xx, timeouts and dropped connections with
exponential backoff (``max_retries``; it honours ``retry-after``). A shot that is refused by
moderation or still failing after those retries raises ``ShotFailed`` so the caller records
it and the other shots go on; a request the server rejects as malformed (bad model, bad size,
bad key) raises ``OpenAIConfigError``: every other shot would fail the same way.

The API key is read from an environment variable and handed to the client; it is never stored
on these objects' records, logged, or written anywhere.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import mimetypes
import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from synthlora.backends.base import ShotFailed

# Keywords strict mode accepts, per the structured-output documentation; the rest are dropped
# from the schema sent (the answer is still validated against the full schema).
STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
    "$ref", "$defs", "definitions", "description", "title", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
}
# Error codes the Images API uses for safety refusals (they arrive as HTTP 400).
MODERATION_CODES = {"moderation_blocked", "content_policy_violation", "content_filter"}


class OpenAIConfigError(RuntimeError):
    """The server refused the request itself (model, size, key …): fix the config, then rerun."""


def api_key_from_env(var: str, stage: str) -> str:
    """The key named by ``<stage>.openai.api_key_env``; an empty name means the server needs none."""
    if not var:
        return "unused"  # local servers (vLLM, Ollama …) often need no key; the client needs a string
    key = os.environ.get(var, "")
    if not key:
        raise OpenAIConfigError(
            f"{stage}.backend is 'openai' but the environment variable {var} is not set: export {var}=<your key> "
            f"(or name another variable in {stage}.openai.api_key_env; '' for a server that needs no key)")
    return key


# One client per connection settings per process: generate jobs that run as threads of the
# snakemake process share its connection pool (keep-alive) instead of opening one each.
_CLIENTS: dict[tuple, Any] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(opts: dict, stage: str):
    from openai import OpenAI

    key = api_key_from_env(opts["api_key_env"], stage)
    ident = (stage, opts["base_url"], opts["api_key_env"], float(opts["timeout"]), int(opts["max_retries"]))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(ident)
        if client is None or client.is_closed():
            client = _CLIENTS[ident] = OpenAI(api_key=key, base_url=opts["base_url"] or None,
                                              timeout=float(opts["timeout"]), max_retries=int(opts["max_retries"]))
        return client


def close_clients() -> None:
    """Close every client of this process: calls in flight end at once (an interrupted run)."""
    if not _CLIENTS_LOCK.acquire(timeout=1):
        return
    try:
        for client in _CLIENTS.values():
            client.close()
        _CLIENTS.clear()
    finally:
        _CLIENTS_LOCK.release()


def data_url(path: str | Path, max_side: int = 0) -> str:
    """The image as a base64 data URL; downscaled to ``max_side`` first when that is set."""
    path = Path(path)
    if max_side:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
        raw, mime = buf.getvalue(), "image/png"
    else:
        raw, mime = path.read_bytes(), mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def pil_data_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}"


# ---- strict structured output ---------------------------------------------------------------


def to_strict_schema(schema: dict) -> dict:
    """A copy of ``schema`` that strict mode accepts: every object closed and every property
    required; a property that was optional becomes nullable (``drop_added_nulls`` removes the
    nulls again); unsupported keywords dropped."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k not in STRICT_KEYWORDS:
                continue
            if k in ("properties", "$defs", "definitions"):
                out[k] = {name: walk(sub) for name, sub in v.items()}
            elif k in ("items", "anyOf", "additionalProperties"):
                out[k] = walk(v) if not isinstance(v, bool) else v
            else:
                out[k] = copy.deepcopy(v)
        is_object = out.get("type") == "object" or "properties" in out
        if is_object:
            props = out.setdefault("properties", {})
            required = set(node.get("required", []))
            for name in props:
                if name not in required:
                    props[name] = _nullable(props[name])
            out["required"] = list(props)
            out["additionalProperties"] = False
            out["type"] = "object"
        return out

    strict = walk(schema)
    if strict.get("type") != "object":
        raise OpenAIConfigError("strict structured output needs an object at the top of the schema; "
                                "wrap the feature schema's root in an object")
    return strict


def _nullable(prop: dict) -> dict:
    kind = prop.get("type")
    if isinstance(kind, str):
        return {**prop, "type": [kind, "null"]}
    if isinstance(kind, list):
        return {**prop, "type": kind if "null" in kind else [*kind, "null"]}
    return {"anyOf": [prop, {"type": "null"}]}


def drop_added_nulls(data: Any, schema: dict) -> Any:
    """Remove the nulls strict mode put into properties the original schema left optional."""
    if isinstance(data, dict) and isinstance(schema, dict):
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return {k: drop_added_nulls(v, props.get(k, {})) for k, v in data.items()
                if not (v is None and k not in required)}
    if isinstance(data, list) and isinstance(schema, dict):
        return [drop_added_nulls(v, schema.get("items", {})) for v in data]
    return data


def _usage(response) -> dict:
    usage = getattr(response, "usage", None)
    return usage.model_dump(exclude_none=True) if usage is not None else {}


class _Chat:
    """Structured-output chat calls shared by the analyzer and the captioner."""

    def __init__(self, model: str, opts: dict, stage: str):
        self.client = make_client(opts, stage)
        self.model = model
        self.opts = opts
        self.usage: list[dict] = []  # one entry per call, for the job's log and the spend report

    def ask(self, messages: list, schema: dict, name: str) -> str:
        extra = {}
        if self.opts.get("max_output_tokens"):
            extra["max_completion_tokens"] = int(self.opts["max_output_tokens"])
        if self.opts.get("temperature") is not None:
            extra["temperature"] = float(self.opts["temperature"])
        response = self.client.chat.completions.create(
            model=self.model, messages=messages,
            response_format={"type": "json_schema",
                             "json_schema": {"name": name, "schema": schema, "strict": True}},
            **extra)
        self.usage.append({"request_id": getattr(response, "_request_id", None), **_usage(response)})
        message = response.choices[0].message
        if getattr(message, "refusal", None):
            return json.dumps({"refusal": message.refusal})  # fails validation → retried, then a clear error
        return message.content or ""


class OpenAIAnalyzer:
    def __init__(self, model: str, opts: dict):
        self.chat = _Chat(model, opts, "analyze")
        self.opts = opts
        self.usage = self.chat.usage

    def analyze(self, reference: Path, description: str, instruction: str, schema: dict, attempt: int = 0) -> str:
        strict = to_strict_schema(schema)
        messages = [
            {"role": "system", "content": instruction},
            {"role": "user", "content": [
                {"type": "text", "text": "Supplementary description of the character:\n" + description},
                {"type": "image_url", "image_url": {"url": data_url(reference, int(self.opts["image_max_side"])),
                                                    "detail": self.opts["image_detail"]}},
            ]},
        ]
        text = self.chat.ask(messages, strict, "character_features")
        try:
            return json.dumps(drop_added_nulls(json.loads(text), schema), ensure_ascii=False, indent=2)
        except json.JSONDecodeError:
            return text  # the caller names the parse error and retries


class OpenAICaptioner:
    def __init__(self, model: str, opts: dict, retries: int = 2):
        self.chat = _Chat(model, opts, "caption")
        self.opts = opts
        self.usage = self.chat.usage
        self.retries = retries

    def tag(self, image: Image.Image, vocabulary: dict[str, list[str]], instruction: str) -> dict[str, str]:
        schema = {"type": "object", "additionalProperties": False, "required": list(vocabulary),
                  "properties": {cat: {"type": "string", "enum": list(tags)} for cat, tags in vocabulary.items()}}
        messages = [{"role": "user", "content": [
            {"type": "text", "text": instruction + " Answer with one tag per category, each from its list."},
            {"type": "image_url", "image_url": {"url": pil_data_url(image), "detail": self.opts["image_detail"]}},
        ]}]
        problem = ""
        for _ in range(self.retries + 1):
            text = self.chat.ask(messages, schema, "image_tags")
            try:
                tags = json.loads(text)
            except json.JSONDecodeError as e:
                problem = f"not valid JSON ({e})"
                continue
            bad = {c: tags.get(c) for c in vocabulary if tags.get(c) not in vocabulary[c]}
            if not bad:
                return {c: tags[c] for c in vocabulary}
            problem = f"tags outside the vocabulary: {bad}"
        raise ValueError(f"the caption model ({self.chat.model}) answered with {problem} after "
                         f"{self.retries + 1} attempts; raise caption.retries or use a model with structured output")


class OpenAIGenerator:
    """One Images API call per shot; PNG back. Reference mode sends the reference image as an input."""

    def __init__(self, model: str, opts: dict, reference: str | Path | None = None):
        self.client = make_client(opts, "generate")
        self.model = model
        self.opts = opts
        self.reference = Path(reference) if reference else None
        if opts["reference_mode"] and self.reference is None:
            raise OpenAIConfigError("generate.openai.reference_mode is on but no reference image was given")

    def request(self, shot: dict) -> dict:
        """The request's parameters (no key, no image bytes): recorded in provenance as sent."""
        params = {"model": self.model, "prompt": shot["prompt"], "size": f"{int(shot['width'])}x{int(shot['height'])}",
                  "n": 1}
        if self.opts["size"]:
            params["size"] = self.opts["size"]
        for name in ("quality", "background", "output_format"):
            if self.opts[name]:
                params[name] = self.opts[name]
        if self.opts["reference_mode"]:
            if self.opts["input_fidelity"]:
                params["input_fidelity"] = self.opts["input_fidelity"]
        elif self.opts["moderation"]:
            params["moderation"] = self.opts["moderation"]  # images.edit takes no moderation level
        return params

    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        import openai

        params = self.request(shot)
        try:
            if self.opts["reference_mode"]:
                with open(self.reference, "rb") as ref:
                    response = self.client.images.edit(image=ref, **params)
            else:
                response = self.client.images.generate(**params)
        except openai.BadRequestError as e:
            code = _error_code(e)
            if code in MODERATION_CODES or "safety" in str(e).lower():
                raise ShotFailed(f"refused by moderation ({code or 'safety system'}): {_error_message(e)}",
                                 e.request_id) from None
            raise OpenAIConfigError(f"the Images API rejected the request ({e.status_code} {code}, parameter "
                                    f"{_error_param(e)!r}): {_error_message(e)} Check generate.model, plan.width/height "
                                    "and generate.openai.") from None
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
            raise OpenAIConfigError(f"the Images API refused the request ({e.status_code}): {_error_message(e)}; "
                                    f"check the key in ${self.opts['api_key_env']}, generate.model and "
                                    "generate.openai.base_url") from None
        except openai.APIStatusError as e:  # 429 / 5xx still failing after the client's retries
            raise ShotFailed(f"HTTP {e.status_code} after {self.opts['max_retries']} retries: {_error_message(e)}",
                             e.request_id) from None
        except openai.APITimeoutError:
            raise ShotFailed(f"timed out ({self.opts['timeout']} s) after {self.opts['max_retries']} retries") from None
        except openai.APIConnectionError as e:
            raise ShotFailed(f"connection failed after {self.opts['max_retries']} retries: {e}") from None
        item = response.data[0] if response.data else None
        if item is None or not item.b64_json:
            raise ShotFailed("the reply carried no image (no b64_json)", getattr(response, "_request_id", None))
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        image.load()
        return image, {
            "model": self.model,
            "request": {k: v for k, v in params.items() if k != "prompt"},
            "reference_input": bool(self.opts["reference_mode"]),
            "revised_prompt": getattr(item, "revised_prompt", None),
            "usage": _usage(response),
            "request_id": getattr(response, "_request_id", None),
        }


def _error_code(e) -> str:
    body = e.body if isinstance(getattr(e, "body", None), dict) else {}
    body = body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return str(body.get("code") or getattr(e, "code", "") or "")


def _error_message(e) -> str:
    body = e.body if isinstance(getattr(e, "body", None), dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return str(inner.get("message") or e.message)


def _error_param(e) -> str:
    body = e.body if isinstance(getattr(e, "body", None), dict) else {}
    inner = body.get("error", body) if isinstance(body.get("error", body), dict) else body
    return str(inner.get("param") or getattr(e, "param", "") or "")
