"""``openai`` backends: any OpenAI-compatible server (OpenAI, vLLM, llama.cpp server, Ollama, LocalAI …).

- analyze: chat completions with the reference image as a data URL and structured output under
  the feature schema (converted to what strict mode accepts; the answer is validated anyway).
- caption: chat completions, one tag per category, each constrained to its vocabulary (enum).
- generate: the Images API (``images.generate``, or ``images.edit`` with the reference image
  when reference mode is on) → a PNG and a provenance record.

Faults: the client itself retries 408/409/429/5xx, timeouts and dropped connections with
exponential backoff (``max_retries``; it honours ``retry-after``). A shot that is refused by
moderation or still failing after those retries raises ``ShotFailed`` so the caller records
it and the other shots go on; a request the server rejects as malformed (bad model, bad size)
raises ``OpenAIConfigError``, and an account-level refusal (no quota, bad key, billing, unknown
model) ``AccountError``, unretried: every other shot would fail the same way, so the stage stops
at the first one (synthlora.generation makes no further call in that run).

A shot's key is built from what its request sends (``request_key_fields``): a setting that never
reaches the Images API (the negative prompt, the seed) changes no key and buys nothing again.

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


class AccountError(OpenAIConfigError):
    """The account behind the key cannot be served (no quota, bad key, billing, no access to the
    model): every request would fail the same way, so none is retried and the stage stops."""


# Error codes that concern the account, not the request: retrying or going on with other shots
# only spends requests (and, for a 429 insufficient_quota, the client would retry each one).
ACCOUNT_CODES = {
    "insufficient_quota": "the account has no quota left: add credit or raise the usage limit "
                          "(platform.openai.com → Settings → Billing / Limits)",
    "billing_hard_limit_reached": "the account reached its billing hard limit: raise it (platform.openai.com → "
                                  "Settings → Limits)",
    "billing_not_active": "billing is not active on the account: add a payment method (platform.openai.com → "
                          "Settings → Billing)",
    "account_deactivated": "the account is deactivated: contact OpenAI support",
    "invalid_api_key": "the key was refused: check the key in the environment variable named by "
                       "<stage>.openai.api_key_env",
    "invalid_organization": "the key's organization is not valid: check OPENAI_ORG_ID / the key's project",
    "model_not_found": "the model does not exist or the key has no access to it: check <stage>.model "
                       "(and, for gpt-image models, the organization's verification)",
}
ACCOUNT_STATUSES = {401: "the key was refused (401): check the key in the environment variable named by "
                         "<stage>.openai.api_key_env",
                    403: "the key may not use this model or endpoint (403): check <stage>.model, the key's "
                         "project permissions and the organization's verification",
                    404: "the model or endpoint does not exist here (404): check <stage>.model and "
                         "<stage>.openai.base_url"}


def account_problem(status: int | None, code: str | None) -> str | None:
    """What to do about an account-level refusal, or None when the error concerns one request."""
    if code in ACCOUNT_CODES:
        return ACCOUNT_CODES[code]
    return ACCOUNT_STATUSES.get(status or 0)


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


def _client_class():
    from openai import OpenAI

    class Client(OpenAI):
        # The client retries every 429; a 429 insufficient_quota (and other account-level codes)
        # will not pass by retrying, so it is answered at once (overrides the client's private hook:
        # its public options cannot tell one 429 from another).
        def _should_retry(self, response) -> bool:
            if response.status_code in (400, 429, 403):
                try:
                    response.read()
                    body = response.json()
                    code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
                except Exception:  # not JSON: the client's own rules decide
                    code = None
                if code in ACCOUNT_CODES:
                    return False
            return super()._should_retry(response)

    return Client


def make_client(opts: dict, stage: str):
    OpenAI = _client_class()

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
        self.stage = stage
        self.usage: list[dict] = []  # one entry per call, for the job's log and the spend report

    def ask(self, messages: list, schema: dict, name: str) -> str:
        import openai

        try:
            return self._ask(messages, schema, name)
        except openai.APIStatusError as e:
            problem = account_problem(e.status_code, _error_code(e))
            if problem is None:
                raise
            raise AccountError(f"the {self.stage} model's server refused the account ({e.status_code} "
                               f"{_error_code(e)}): {_error_message(e)} What to do: "
                               f"{problem.replace('<stage>', self.stage)} (key variable "
                               f"${self.opts['api_key_env']}, model {self.model!r}); then run snakemake again.") from None

    def _ask(self, messages: list, schema: dict, name: str) -> str:
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


def images_request(model: str, opts: dict, shot: dict) -> dict:
    """The Images API parameters of one shot (no key, no image bytes): exactly what is sent."""
    params = {"model": model, "prompt": shot["prompt"], "size": f"{int(shot['width'])}x{int(shot['height'])}", "n": 1}
    if opts.get("size"):
        params["size"] = opts["size"]
    for name in ("quality", "background", "output_format"):
        if opts.get(name):
            params[name] = opts[name]
    if opts.get("reference_mode"):
        if opts.get("input_fidelity"):
            params["input_fidelity"] = opts["input_fidelity"]
    elif opts.get("moderation"):
        params["moderation"] = opts["moderation"]  # images.edit takes no moderation level
    return params


def request_key_fields(pixels: dict) -> dict:
    """What of a planned shot reaches the Images API (and so can change its pixels): the endpoint,
    the request's parameters and, in reference mode, the reference image's content. Nothing else
    (negative prompt, seed, steps: the API has none of them) enters the shot key."""
    opts = pixels.get("openai", {})
    fields = {"backend": "openai", "endpoint": "edits" if opts.get("reference_mode") else "generations",
              **images_request(pixels.get("model", ""), opts, pixels)}
    if opts.get("reference_mode"):
        fields["reference_sha256"] = pixels.get("reference_sha256", "")
    return fields


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
        return images_request(self.model, self.opts, shot)

    def generate(self, shot: dict) -> tuple[Image.Image, dict[str, Any]]:
        import openai

        params = self.request(shot)
        try:
            if self.opts["reference_mode"]:
                with open(self.reference, "rb") as ref:
                    response = self.client.images.edit(image=ref, **params)
            else:
                response = self.client.images.generate(**params)
        except openai.APIStatusError as e:
            raise classify_error(e.status_code, _error_code(e), _error_message(e), _error_param(e), e.request_id,
                                 self.opts, self.model, retried=True) from None
        except openai.APITimeoutError:
            raise ShotFailed(f"timed out ({self.opts['timeout']} s) after {self.opts['max_retries']} retries") from None
        except openai.APIConnectionError as e:
            raise ShotFailed(f"connection failed after {self.opts['max_retries']} retries: {e}") from None
        item = response.data[0] if response.data else None
        return image_result(item.b64_json if item else None, getattr(item, "revised_prompt", None), _usage(response),
                            getattr(response, "_request_id", None), params, self.model, self.opts)


def classify_error(status: int | None, code: str, message: str, param: str, request_id: str | None, opts: dict,
                   model: str, retried: bool) -> Exception:
    """An Images API error as what it means here: ``AccountError`` (stop the stage),
    ``OpenAIConfigError`` (a malformed request: stop), or ``ShotFailed`` (this shot only)."""
    problem = account_problem(status, code)
    if problem is not None:
        return AccountError(
            f"the Images API refused the account ({status} {code or ''}): {message} What to do: "
            f"{problem.replace('<stage>', 'generate')} (key variable ${opts.get('api_key_env', '')}, model "
            f"{model!r}); then run snakemake again. The stage stopped at this first refusal: no further shot was "
            "requested.")
    if status == 400:
        if code in MODERATION_CODES or "safety" in message.lower():
            return ShotFailed(f"refused by moderation ({code or 'safety system'}): {message}", request_id)
        return OpenAIConfigError(f"the Images API rejected the request ({status} {code}, parameter {param!r}): "
                                 f"{message} Check generate.model, plan.width/height and generate.openai.")
    # 429 / 5xx (after the client's retries), or a batch line's own failure (expired, server error)
    after = f" after {opts.get('max_retries')} retries" if retried else ""
    return ShotFailed(f"HTTP {status}{after}: {message}" if status else f"{code or 'failed'}: {message}", request_id)


def image_result(b64: str | None, revised_prompt: str | None, usage: dict, request_id: str | None, params: dict,
                 model: str, opts: dict, **extra) -> tuple[Image.Image, dict[str, Any]]:
    """An Images API reply (a synchronous response or one line of a batch's output) as the image and
    its provenance; the Content Credentials the file carries are read before it is re-encoded."""
    if not b64:
        raise ShotFailed("the reply carried no image (no b64_json)", request_id)
    raw = base64.b64decode(b64)
    image = Image.open(io.BytesIO(raw))
    image.load()
    from synthlora.credentials import read_credentials

    return image, {
        "model": model,
        "request": {k: v for k, v in params.items() if k != "prompt"},
        "reference_input": bool(opts.get("reference_mode")),
        "revised_prompt": revised_prompt,
        "usage": usage,
        "request_id": request_id,
        "content_credentials": read_credentials(raw, _mime(raw)),
        **extra,
    }


def _mime(raw: bytes) -> str:
    if raw.startswith(b"\x89PNG"):
        return "image/png"
    if raw.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if raw[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


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
