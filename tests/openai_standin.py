"""A loopback stand-in for the OpenAI API, for tests only (the real service is paid and external).

Speaks ``/v1/chat/completions``, ``/v1/images/generations``, ``/v1/images/edits``, ``/v1/files``
and ``/v1/batches`` closely enough for the official client: it rejects malformed requests the way the real API does (missing
model, bad size, ``response_format`` on image calls, a schema strict mode would refuse, a wrong
key), replies deterministically (schema-valid JSON; PNGs that differ by prompt), and injects
latency, 429 bursts, 5xx, timeouts, dropped connections and moderation refusals on demand.

    with StandIn(key="sk-test") as api:
        api.fault("429", count=3)                        # the next 3 matching requests get 429
        api.fault("moderation", match="waving")          # every prompt containing 'waving' is refused
        api.latency = 0.2
        ... OpenAI(base_url=api.url, api_key="sk-test") ...
        api.calls   # [(path, prompt-or-None), …]

Batches: ``POST /v1/files`` (purpose batch: a JSONL of requests) then ``POST /v1/batches``; the
batch stays ``in_progress`` for ``api.batch_polls`` status checks (or while ``api.batch_hold``),
then each line is answered as the synchronous endpoint would (faults apply per line: a moderation
refusal lands in the error file) and the batch is ``completed`` with output and error files.
``api.expire_after`` lines makes it end ``expired`` with the rest in the error file.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import io
import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

SIZES = {"auto", "1024x1024", "1536x1024", "1024x1536"}
QUALITIES = {"low", "medium", "high", "auto"}
BACKGROUNDS = {"transparent", "opaque", "auto"}
FORMATS = {"png", "jpeg", "webp"}


class Fault:
    def __init__(self, kind: str, count: int | None, match: str, endpoint: str, seconds: float):
        self.kind, self.count, self.match, self.endpoint, self.seconds = kind, count, match, endpoint, seconds

    def applies(self, path: str, prompt: str) -> bool:
        if self.count is not None and self.count <= 0:
            return False
        return self.endpoint in path and self.match in (prompt or "")


class StandIn:
    def __init__(self, key: str = "sk-standin", latency: float = 0.0):
        self.key = key
        self.latency = latency
        self.calls: list[tuple[str, str | None]] = []
        self.faults: list[Fault] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most requests answered at once: the concurrency the client side allowed
        # (words, answer): a yes/no question (listed as 'answer_N: question' in the request) that
        # contains the words gets this answer; the others a deterministic sample
        self.yes_no: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.files: dict[str, dict] = {}    # id → {"bytes", "purpose", "filename"}
        self.batches: dict[str, dict] = {}  # id → the batch object (plus "_lines")
        self.batch_polls = 1       # status checks a batch stays in_progress for
        self.batch_hold = False    # True: batches stay in_progress until released
        self.expire_after: int | None = None  # lines answered before a batch expires (None: never)
        self.sign = None  # PNG bytes → PNG bytes with C2PA Content Credentials (None: unsigned)
        standin = self

        class Handler(_Handler):
            api = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def fault(self, kind: str, count: int | None = None, match: str = "", endpoint: str = "/v1/",
              seconds: float = 5.0) -> None:
        """kind: '429' | '500' | '503' | 'timeout' (sleep ``seconds`` before answering) | 'drop'
        (close the connection unanswered) | 'moderation' (400 moderation_blocked) | 'quota' (429
        insufficient_quota) | 'billing' (400 billing_hard_limit_reached). ``count``: how many
        matching requests it hits (None: all); ``match``: a substring of the prompt."""
        with self.lock:
            self.faults.append(Fault(kind, count, match, endpoint, seconds))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def calls_to(self, endpoint: str) -> int:
        with self.lock:
            return sum(1 for path, _ in self.calls if endpoint in path)

    def take_fault(self, path: str, prompt: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if f.applies(path, prompt):
                    if f.count is not None:
                        f.count -= 1
                    return f
        return None


class _Handler(BaseHTTPRequestHandler):
    api: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    # ---- plumbing -------------------------------------------------------------------------

    def _reply(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_" + hashlib.sha256(data).hexdigest()[:20])
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None, param: str | None = None,
               type_: str = "invalid_request_error", headers: dict | None = None) -> None:
        self._reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}}, headers)

    def _read_body(self) -> tuple[dict, dict]:
        """JSON or multipart form → (fields, files)."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            fields, files = {}, {}
            for part in msg.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if part.get_filename():
                    files.setdefault(name.rstrip("[]"), []).append(payload)
                else:
                    fields[name] = payload.decode()
            return fields, files
        return (json.loads(raw) if raw else {}), {}

    def do_GET(self):  # noqa: N802
        path = self.path.split("?")[0]
        with self.api.lock:
            self.api.calls.append((path, None))
        if self.headers.get("Authorization") != f"Bearer {self.api.key}":
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        m = re.fullmatch(r"/v1/files/([\w-]+)/content", path)
        if m:
            f = self.api.files.get(m.group(1))
            if f is None:
                return self._error(404, f"No such File object: {m.group(1)}", param="id")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(f["bytes"])))
            self.end_headers()
            self.wfile.write(f["bytes"])
            return
        m = re.fullmatch(r"/v1/batches/([\w-]+)", path)
        if m:
            batch = self.api.batches.get(m.group(1))
            if batch is None:
                return self._error(404, f"No batch found with id '{m.group(1)}'.", param="batch_id")
            _advance(self.api, batch)
            return self._reply(200, _public(batch))
        if path == "/v1/batches":
            data = [_public(b) for b in reversed(list(self.api.batches.values()))]
            return self._reply(200, {"object": "list", "data": data, "has_more": False,
                                     "first_id": data[0]["id"] if data else None,
                                     "last_id": data[-1]["id"] if data else None})
        return self._error(404, f"Invalid URL (GET {path})")

    def do_POST(self):  # noqa: N802 (http.server's naming)
        with self.api.lock:
            self.api.in_flight += 1
            self.api.max_in_flight = max(self.api.max_in_flight, self.api.in_flight)
        try:
            self._post()
        finally:
            with self.api.lock:
                self.api.in_flight -= 1

    def _post(self):
        try:
            body, files = self._read_body()
        except (ValueError, UnicodeDecodeError) as e:
            return self._error(400, f"We could not parse the JSON body of your request. ({e})")
        path = self.path.split("?")[0]
        prompt = body.get("prompt") if "images" in path else json.dumps(body.get("messages", ""))[:2000]
        with self.api.lock:
            self.api.calls.append((path, body.get("prompt")))
        if self.headers.get("Authorization") != f"Bearer {self.api.key}":
            return self._error(401, "Incorrect API key provided.", code="invalid_api_key")
        fault = self.api.take_fault(path, prompt or "")
        if fault is not None:
            if fault.kind in ("429", "500", "502", "503"):
                status = int(fault.kind)
                msg = "Rate limit reached for requests" if status == 429 else "The server had an error while processing your request."
                return self._error(status, msg, type_="requests" if status == 429 else "server_error",
                                   headers={"retry-after-ms": "20"})
            if fault.kind == "timeout":
                time.sleep(fault.seconds)
            elif fault.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)  # unanswered: the client sees a dropped connection
                return
            else:
                refused = _refusal(fault)
                if refused:
                    return self._reply(*refused)
        if self.api.latency:
            time.sleep(self.api.latency)
        if path == "/v1/chat/completions":
            return self._chat(body)
        if path == "/v1/images/generations":
            return self._image(body, None)
        if path == "/v1/images/edits":
            if not files.get("image"):
                return self._error(400, "Missing required parameter: 'image'.", param="image")
            return self._image(body, files["image"][0])
        if path == "/v1/files":
            return self._file(body, files)
        if path == "/v1/batches":
            return self._batch(body)
        m = re.fullmatch(r"/v1/batches/([\w-]+)/cancel", path)
        if m and m.group(1) in self.api.batches:
            self.api.batches[m.group(1)]["status"] = "cancelling"
            return self._reply(200, _public(self.api.batches[m.group(1)]))
        return self._error(404, f"Invalid URL (POST {path})")

    # ---- files and batches ----------------------------------------------------------------

    def _file(self, body: dict, files: dict):
        if not files.get("file"):
            return self._error(400, "Missing required parameter: 'file'.", param="file")
        purpose = body.get("purpose")
        if purpose not in ("batch", "vision", "user_data", "assistants", "fine-tune"):
            return self._error(400, f"Invalid value for 'purpose': {purpose!r}.", param="purpose")
        data = files["file"][0]
        if purpose == "batch":
            try:
                [json.loads(line) for line in data.decode().splitlines() if line.strip()]
            except (ValueError, UnicodeDecodeError):
                return self._error(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        with self.api.lock:
            file_id = f"file-{len(self.api.files) + 1:04d}{hashlib.sha256(data).hexdigest()[:8]}"
            self.api.files[file_id] = {"bytes": data, "purpose": purpose}
        return self._reply(200, {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                                 "filename": "upload", "purpose": purpose, "status": "processed"})

    def _batch(self, body: dict):
        f = self.api.files.get(body.get("input_file_id", ""))
        if f is None or f["purpose"] != "batch":
            return self._error(400, f"Invalid 'input_file_id': {body.get('input_file_id')!r}.", param="input_file_id")
        endpoint = body.get("endpoint")
        if endpoint not in ("/v1/images/generations", "/v1/images/edits", "/v1/chat/completions", "/v1/responses",
                            "/v1/embeddings"):
            return self._error(400, f"Invalid value for 'endpoint': {endpoint!r}.", param="endpoint")
        if body.get("completion_window") != "24h":
            return self._error(400, "Invalid value for 'completion_window': must be '24h'.", param="completion_window")
        lines = [json.loads(line) for line in f["bytes"].decode().splitlines() if line.strip()]
        errors, seen = [], set()
        for n, line in enumerate(lines, 1):
            if line.get("custom_id") in seen or not line.get("custom_id"):
                errors.append({"code": "duplicate_custom_id", "message": "custom_id must be unique and set", "line": n})
            seen.add(line.get("custom_id"))
            if line.get("method") != "POST" or line.get("url") != endpoint:
                errors.append({"code": "invalid_request", "message": f"line {n}: url must be {endpoint}", "line": n})
        with self.api.lock:
            batch_id = f"batch_{len(self.api.batches) + 1:04d}"
            batch = {"id": batch_id, "object": "batch", "endpoint": endpoint, "input_file_id": body["input_file_id"],
                     "completion_window": "24h", "created_at": int(time.time()),
                     "status": "failed" if errors else "in_progress", "output_file_id": None, "error_file_id": None,
                     "errors": {"object": "list", "data": errors} if errors else None,
                     "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                     "metadata": body.get("metadata"), "_lines": lines, "_polls": self.api.batch_polls}
            self.api.batches[batch_id] = batch
        return self._reply(200, _public(batch))

    # ---- chat ---------------------------------------------------------------------------

    def _chat(self, body: dict):
        if not body.get("model"):
            return self._error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "Missing required parameter: 'messages'.", param="messages")
        for m in messages:
            for part in m.get("content") if isinstance(m.get("content"), list) else []:
                if part.get("type") == "image_url" and not str(part["image_url"]["url"]).startswith(("data:image/", "http")):
                    return self._error(400, "Invalid image URL.", param="messages")
        fmt = body.get("response_format") or {}
        if fmt.get("type") != "json_schema":
            return self._reply(200, _completion(body["model"], "I am a stand-in."))
        spec = fmt.get("json_schema", {})
        schema = spec.get("schema")
        if not spec.get("name") or not isinstance(schema, dict):
            return self._error(400, "Missing required parameter: 'response_format.json_schema.name'.",
                               param="response_format")
        if spec.get("strict"):
            problem = strict_problem(schema)
            if problem:
                return self._error(400, f"Invalid schema for response_format '{spec['name']}': {problem}",
                                   param="response_format", code="invalid_json_schema")
        seed = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        answer = sample(schema, random.Random(seed), schema)
        if self.api.yes_no and isinstance(answer, dict):
            text = json.dumps(messages)
            for slot, question in re.findall(r"(answer_\d+): (.*?)(?:\\n|\"|$)", text):
                for words, reply in self.api.yes_no:
                    if slot in answer and words in question:
                        answer[slot] = reply
        return self._reply(200, _completion(body["model"], json.dumps(answer)))

    # ---- images -------------------------------------------------------------------------

    def _image(self, body: dict, reference: bytes | None):
        return self._reply(*image_answer(self.api, body, reference))


def _err(status: int, message: str, code: str | None = None, param: str | None = None,
         type_: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _refusal(fault: Fault) -> tuple[int, dict] | None:
    """The error reply of a fault that refuses a request (moderation, account-level), else None."""
    if fault.kind == "moderation":
        return _err(400, "Your request was rejected as a result of our safety system.",
                    code="moderation_blocked", type_="image_generation_user_error")
    if fault.kind == "quota":
        return _err(429, "You exceeded your current quota, please check your plan and billing details.",
                    code="insufficient_quota", type_="insufficient_quota")
    if fault.kind == "billing":
        return _err(400, "Billing hard limit has been reached.", code="billing_hard_limit_reached")
    return None


def image_answer(api: StandIn, body: dict, reference: bytes | None) -> tuple[int, dict]:
    """What /v1/images/generations (reference None) or /v1/images/edits answers: (status, body)."""
    model = body.get("model")
    if not model:
        return _err(400, "you must provide a model parameter", param="model")
    if not body.get("prompt"):
        return _err(400, "Missing required parameter: 'prompt'.", param="prompt")
    if "response_format" in body:
        return _err(400, f"Unknown parameter: 'response_format'. ({model} always returns b64_json)",
                    param="response_format", code="unknown_parameter")
    size = body.get("size", "auto")
    if size not in SIZES and not (model.startswith("gpt-image-2") and _multiple_of_16(size)):
        return _err(400, f"Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', "
                    "'1536x1024', and 'auto'.", param="size", code="invalid_value")
    for name, allowed in (("quality", QUALITIES), ("background", BACKGROUNDS), ("output_format", FORMATS),
                          ("moderation", {"low", "auto"}), ("input_fidelity", {"low", "high"})):
        if name in body and body[name] not in allowed:
            return _err(400, f"Invalid value for '{name}': '{body[name]}'.", param=name, code="invalid_value")
    if reference is None and "input_fidelity" in body:
        return _err(400, "Unknown parameter: 'input_fidelity'.", param="input_fidelity")
    if reference is not None and "moderation" in body:
        return _err(400, "Unknown parameter: 'moderation'.", param="moderation")
    if body.get("background") == "transparent" and body.get("output_format", "png") == "jpeg":
        return _err(400, "Transparent background requires output_format png or webp.", param="background")
    n = int(body.get("n", 1))
    if not 1 <= n <= 10:
        return _err(400, f"Invalid 'n': {n}; it must be between 1 and 10.", param="n")
    w, h = (1024, 1024) if size == "auto" else map(int, size.split("x"))
    seed_text = body["prompt"] + (hashlib.sha256(reference).hexdigest() if reference else "")
    data = [{"b64_json": _png(w, h, f"{seed_text}#{i}", api.sign), "revised_prompt": "stand-in: " + body["prompt"][:200]}
            for i in range(n)]
    tokens_in = len(body["prompt"]) // 4 + (1000 if reference else 0)
    usage = {"input_tokens": tokens_in, "output_tokens": 1056 * n, "total_tokens": tokens_in + 1056 * n,
             "input_tokens_details": {"text_tokens": len(body["prompt"]) // 4,
                                      "image_tokens": 1000 if reference else 0}}
    return 200, {"created": int(time.time()), "data": data, "usage": usage,
                 "size": f"{w}x{h}", "quality": body.get("quality", "auto"),
                 "output_format": body.get("output_format", "png")}


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


def _advance(api: StandIn, batch: dict) -> None:
    """One status check of a batch: after its polls (unless held) every line is answered."""
    if batch["status"] not in ("in_progress", "cancelling"):
        return
    if batch["status"] == "in_progress":
        batch["_polls"] -= 1
        if batch["_polls"] > 0 or api.batch_hold:
            return
    outputs, errors = [], []
    for n, line in enumerate(batch["_lines"]):
        request_id = f"req_batch_{batch['id']}_{n}"
        if batch["status"] == "cancelling" or (api.expire_after is not None and n >= api.expire_after):
            code = "batch_cancelled" if batch["status"] == "cancelling" else "batch_expired"
            errors.append({"id": f"batch_req_{n}", "custom_id": line["custom_id"], "response": None,
                           "error": {"code": code, "message": f"This request could not be executed before the "
                                                              f"batch {code.split('_')[1]}."}})
            continue
        body = line.get("body") or {}
        fault = api.take_fault(line["url"], body.get("prompt") or "")
        answer = _refusal(fault) if fault else None
        if answer is None and fault is not None and fault.kind in ("429", "500", "502", "503"):
            answer = _err(int(fault.kind), "The server had an error while processing your request.", type_="server_error")
        if answer is None:
            reference = None
            if line["url"].endswith("/edits"):
                ref = (body.get("images") or [{}])[0]
                reference = api.files.get(ref.get("file_id", ""), {}).get("bytes")
                if reference is None:
                    answer = _err(400, "Missing required parameter: 'images'.", param="images")
            if answer is None:
                answer = image_answer(api, {k: v for k, v in body.items() if k != "images"}, reference or None)
        status, reply = answer
        entry = {"id": f"batch_req_{n}", "custom_id": line["custom_id"],
                 "response": {"status_code": status, "request_id": request_id, "body": reply}, "error": None}
        (outputs if status == 200 else errors).append(entry)
    with api.lock:
        for kind, entries in (("output", outputs), ("error", errors)):
            if entries:
                data = ("\n".join(json.dumps(e) for e in entries) + "\n").encode()
                file_id = f"file-{len(api.files) + 1:04d}{kind}"
                api.files[file_id] = {"bytes": data, "purpose": "batch_output"}
                batch[f"{kind}_file_id"] = file_id
    batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(outputs), "failed": len(errors)}
    batch["status"] = ("cancelled" if batch["status"] == "cancelling"
                       else "expired" if api.expire_after is not None and api.expire_after < len(batch["_lines"])
                       else "completed")


def _multiple_of_16(size: str) -> bool:
    m = re.fullmatch(r"(\d+)x(\d+)", str(size))
    return bool(m) and all(int(v) % 16 == 0 and int(v) > 0 for v in m.groups())


def _png(w: int, h: int, seed_text: str, sign=None) -> str:
    """Blocky noise seeded by the prompt: sharp, distinct per prompt, identical per prompt. ``sign``
    (PNG bytes → PNG bytes) adds Content Credentials, as the real service does (tests/c2pa_signing.py)."""
    rng = np.random.default_rng(int(hashlib.sha256(seed_text.encode()).hexdigest()[:16], 16))
    cells = rng.integers(0, 256, size=(max(1, h // 8), max(1, w // 8), 3), dtype=np.uint8)
    img = Image.fromarray(cells).resize((w, h), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    raw = sign(buf.getvalue()) if sign else buf.getvalue()
    return base64.b64encode(raw).decode()


def _completion(model: str, content: str) -> dict:
    return {"id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 900, "completion_tokens": len(content) // 4,
                      "total_tokens": 900 + len(content) // 4}}


def strict_problem(schema: dict, where: str = "()") -> str | None:
    """What strict mode refuses: an object that is not closed or does not require every property."""
    if not isinstance(schema, dict):
        return None
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return f"In context={where}, 'additionalProperties' is required to be supplied and to be false."
        missing = [k for k in props if k not in schema.get("required", [])]
        if missing:
            return (f"In context={where}, 'required' is required to be supplied and to be an array including "
                    f"every key in properties. Missing '{missing[0]}'.")
        for k, sub in props.items():
            problem = strict_problem(sub, f"{where[:-1]}'properties', '{k}')")
            if problem:
                return problem
    for key in ("items",):
        if isinstance(schema.get(key), dict):
            problem = strict_problem(schema[key], f"{where[:-1]}'items')")
            if problem:
                return problem
    for sub in schema.get("anyOf", []):
        problem = strict_problem(sub, where)
        if problem:
            return problem
    for key in ("minLength", "maxLength", "uniqueItems", "patternProperties"):
        if key in schema:
            return f"In context={where}, '{key}' is not permitted."
    return None


def sample(schema: dict, rng: random.Random, root: dict, path: str = "") -> object:
    """A deterministic value valid against ``schema`` (the subset strict mode uses)."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return sample(root.get("$defs", {}).get(name, {}), rng, root, path)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return sample(options[0], rng, root, path)
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {k: sample(v, rng, root, f"{path}/{k}") for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        n = max(schema.get("minItems", 0), min(3, schema.get("maxItems", 3)))
        return [sample(schema.get("items", {}), rng, root, f"{path}/{i}") for i in range(n)]
    if kind == "integer":
        return int(schema.get("minimum", 0)) + rng.randint(0, 5)
    if kind == "number":
        return float(schema.get("minimum", 0)) + rng.random()
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return f"stand-in {path.strip('/').replace('/', ' ')} {rng.randint(0, 999)}"
