"""``generate.openai.batch``: the shots a run still needs go to the Images API as one Batch API job
(half the synchronous price, results within 24 h), and come back into the same per-key files.

The generate jobs stay one per shot (their outputs, keys and provenance are unchanged). The first
job of a character that needs an image submits every planned shot that has no image yet and is
in no usable batch (JSONL upload to ``/v1/files``, then ``/v1/batches``), records the batch under
``results/<character>/batches/<batch id>.json`` and waits for it, printing a progress line when
its state changes; the other jobs of that character wait on the same batch. When it ends, its
output and error lines are saved beside the record (``batches/<id>/<key>.json``), and every job
takes its own line (by
``custom_id``, the shot key): an image becomes the image and provenance the synchronous path
writes; a failed line becomes a failed shot with its reason.

Nothing is paid twice: a run that was interrupted, or that gave up waiting (``batch_wait_hours``),
finds the recorded batch of a key and polls it again; a line that succeeded is used even if its
image file was deleted later. Only a key whose line failed (or whose batch failed as a whole) goes
into a new batch, after ``retry-failed``. Between the upload and the batch's creation the record
holds the input file's id: a run that died in that gap adopts the batch created from that file
instead of creating another.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from synthlora.backends.base import ShotFailed
from synthlora.backends.openai_api import (OpenAIConfigError, classify_error, image_result, images_request,
                                           make_client)
from synthlora.io import read_json, write_json, write_text

ENDPOINTS = {False: "/v1/images/generations", True: "/v1/images/edits"}
TERMINAL = ("completed", "failed", "expired", "cancelled")
# Batch API price relative to the synchronous one (OpenAI: 50 % off), for the spend estimate.
BATCH_PRICE_FACTOR = 0.5

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_GAVE_UP: dict[Path, str] = {}  # batches dir → why this process stopped waiting (later jobs fail at once)


class BatchPending(RuntimeError):
    """The batch has not finished within batch_wait_hours: run snakemake again later to collect it."""


def batches_dir(images_dir: Path) -> Path:
    return Path(images_dir).parent / "batches"


def batch_result(shot: dict, settings: dict, reference: str | None, images_dir: Path,
                 out: IO[str] = sys.stdout) -> tuple[Any, dict[str, Any]]:
    """The image and provenance of ``shot`` from its batch, submitting one first if needed."""
    folder = batches_dir(images_dir)
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(folder.resolve(), threading.Lock())
    with lock:
        record = _record_with(folder, shot["key"])
        if folder.resolve() in _GAVE_UP and (record is None or record.get("status") not in TERMINAL):
            raise BatchPending(_GAVE_UP[folder.resolve()])  # this run stopped waiting: no new batch either
        try:
            if record is not None and not record.get("batch_id"):  # the last run stopped after its upload
                record = _adopt(record, make_client(settings["openai"], "generate"), folder)
            if record is None:
                record = _submit(shot, settings, reference, Path(images_dir), folder, out)
            record = _wait(record, settings, folder, out)
        except Exception as exc:
            raise _unreachable(exc, settings, folder) from None
        try:
            return _line_result(record, shot, settings, folder)
        except Exception:
            # This failure is now the shot's record; after retry-failed the key goes into a new batch.
            record.setdefault("failures_recorded", []).append(shot["key"])
            write_json(_record_path(folder, record), record)
            raise


def _unreachable(exc: Exception, settings: dict, folder: Path) -> Exception:
    """An error of the files/batches endpoints themselves: account-level or malformed stops the
    stage; anything else (5xx, timeouts after the client's retries) ends this run's wait without
    recording any shot as failed: nothing was made, and a later run polls the recorded batch."""
    import openai

    from synthlora.generation import CANCELLED

    if isinstance(exc, openai.APIStatusError):
        from synthlora.backends.openai_api import _error_code, _error_message, _error_param

        err = classify_error(exc.status_code, _error_code(exc), _error_message(exc), _error_param(exc),
                             exc.request_id, settings["openai"], settings.get("model", ""), retried=True)
        if isinstance(err, OpenAIConfigError):
            return err
        why = f"HTTP {exc.status_code}: {_error_message(exc)}"
    elif isinstance(exc, (openai.APITimeoutError, openai.APIConnectionError)) and not CANCELLED.is_set():
        why = f"{type(exc).__name__}: {exc}"
    else:
        return exc
    message = (f"the Batch API did not answer ({why}) after {settings['openai'].get('max_retries')} retries; run "
               "snakemake again (a recorded batch is polled again, nothing is paid twice)")
    _GAVE_UP[folder.resolve()] = message
    return BatchPending(message)


# ---- records --------------------------------------------------------------------------------


def _records(folder: Path) -> list[dict]:
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append(read_json(path))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda r: r.get("submitted", ""), reverse=True)  # newest first


def _record_with(folder: Path, key: str) -> dict | None:
    """The batch to take ``key`` from: a pending one that holds it, or a finished one whose line for
    it succeeded, or whose failure has not been recorded as the shot's yet. A failure that was
    recorded (and then removed by retry-failed) is not taken again: the key goes into a new batch."""
    for record in _records(folder):
        if key not in record.get("keys", []):
            continue
        if record.get("status") not in TERMINAL:
            return record
        if record.get("outcomes", {}).get(key) == "ok" or key not in record.get("failures_recorded", []):
            return record
    return None


def _line_ok(line: dict) -> bool:
    response = line.get("response") or {}
    return not line.get("error") and response.get("status_code") == 200


def _record_path(folder: Path, record: dict) -> Path:
    return folder / f"{record.get('batch_id') or record['input_file_id']}.json"


# ---- submit ---------------------------------------------------------------------------------


def _stale_shots(shot: dict, images_dir: Path, folder: Path) -> list[dict]:
    """The shots of this character's plan that need an image and are in no usable batch; the
    asking shot always. Failed records count as made (``retry-failed`` removes them first)."""
    try:
        planned = read_json(images_dir.parent / "plan.json")["shots"]
    except (OSError, ValueError, KeyError):
        planned = []
    shots, seen = [shot], {shot["key"]}
    for other in planned:
        key = other.get("key")
        if key in seen or other.get("backend") != "openai" or (images_dir / f"{key}.png").exists():
            continue
        if _record_with(folder, key) is None:
            shots.append(other)
            seen.add(key)
    return shots


def _opts_of(shot: dict, settings: dict) -> dict:
    return {**settings["openai"], **shot.get("openai", {})}


def _submit(shot: dict, settings: dict, reference: str | None, images_dir: Path, folder: Path,
            out: IO[str]) -> dict:
    opts = settings["openai"]
    client = make_client(opts, "generate")
    shots = _stale_shots(shot, images_dir, folder)
    reference_file = None
    lines, requests = [], {}
    for s in shots:
        s_opts = _opts_of(s, settings)
        edit = bool(s_opts.get("reference_mode"))
        params = images_request(s.get("model", settings.get("model", "")), s_opts, s)
        body = dict(params)
        if edit:
            if reference is None:
                raise OpenAIConfigError("generate.openai.reference_mode is on but no reference image was given")
            if reference_file is None:  # uploaded once, named by id in every line (not 80 copies)
                with open(reference, "rb") as f:
                    reference_file = client.files.create(file=f, purpose="vision").id
            body["images"] = [{"file_id": reference_file}]
        lines.append(json.dumps({"custom_id": s["key"], "method": "POST", "url": ENDPOINTS[edit], "body": body}))
        requests[s["key"]] = {"endpoint": ENDPOINTS[edit], "params": params}
    endpoints = {r["endpoint"] for r in requests.values()}
    if len(endpoints) > 1:  # one batch, one endpoint (API rule); a plan mixes them only if config changed mid-plan
        raise OpenAIConfigError("the shots to generate use both images/generations and images/edits "
                                "(generate.openai.reference_mode changed?); run snakemake --until plan, then again")
    payload = ("\n".join(lines) + "\n").encode()
    uploaded = client.files.create(file=("synthlora-batch.jsonl", payload, "application/jsonl"), purpose="batch")
    record = {"batch_id": None, "input_file_id": uploaded.id, "endpoint": endpoints.pop(), "keys": list(requests),
              "requests": requests, "reference_file_id": reference_file, "model": settings.get("model", ""),
              "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "status": "submitting"}
    folder.mkdir(parents=True, exist_ok=True)
    write_json(_record_path(folder, record), record)  # before creating: a crash here is adopted, not repaid
    batch = client.batches.create(input_file_id=uploaded.id, endpoint=record["endpoint"], completion_window="24h",
                                  metadata={"source": "synthlora", "character": images_dir.parent.name})
    _record_path(folder, record).unlink(missing_ok=True)
    record.update(batch_id=batch.id, status=batch.status)
    write_json(_record_path(folder, record), record)
    _say(f"batch {batch.id}: {len(lines)} shot(s) of {images_dir.parent.name} submitted "
         f"(half price; results within 24 h; recorded in {_record_path(folder, record)})", out)
    return record


def _adopt(record: dict, client, folder: Path) -> dict | None:
    """A record left between upload and creation: the batch made from its input file, or None (and
    the record removed) when none was made."""
    for batch in client.batches.list(limit=100):
        if batch.input_file_id == record["input_file_id"]:
            _record_path(folder, record).unlink(missing_ok=True)
            record.update(batch_id=batch.id, status=batch.status)
            write_json(_record_path(folder, record), record)
            return record
    _record_path(folder, record).unlink(missing_ok=True)  # never made into a batch: nothing was paid
    return None


# ---- wait -----------------------------------------------------------------------------------


def _wait(record: dict, settings: dict, folder: Path, out: IO[str]) -> dict:
    if record.get("status") in TERMINAL:
        return record
    from synthlora.generation import CANCELLED, GenerationCancelled

    opts = settings["openai"]
    client = make_client(opts, "generate")
    limit = float(opts.get("batch_wait_hours", 24)) * 3600
    poll = float(opts.get("batch_poll_seconds", 60))
    started, last = time.monotonic(), None
    while True:
        batch = client.batches.retrieve(record["batch_id"])
        counts = batch.request_counts
        progress = (batch.status, counts.completed if counts else 0, counts.failed if counts else 0)
        if progress != last:
            total = counts.total if counts else len(record["keys"])
            _say(f"batch {batch.id}: {batch.status}, {progress[1]} of {total} done, {progress[2]} failed "
                 f"({(time.monotonic() - started) / 60:.0f} min waited)", out)
            last = progress
        if batch.status in TERMINAL:
            return _finish(record, batch, client, folder)
        if time.monotonic() - started >= limit:
            message = (f"batch {batch.id} is still {batch.status} ({progress[1]} of {len(record['keys'])} done) "
                       f"after waiting {limit / 3600:g} h (generate.openai.batch_wait_hours); it is recorded in "
                       f"{_record_path(folder, record)}: run snakemake again later to collect its images "
                       "(the same batch is polled, nothing is paid again)")
            _GAVE_UP[folder.resolve()] = message
            raise BatchPending(message)
        deadline = time.monotonic() + min(poll, max(0.0, limit - (time.monotonic() - started)))
        while time.monotonic() < deadline:
            if CANCELLED.is_set():
                raise GenerationCancelled(f"batch {batch.id}: run interrupted; it stays recorded and is polled "
                                          "again by the next run")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _finish(record: dict, batch, client, folder: Path) -> dict:
    """Save the ended batch's result lines beside its record, one file per shot key (the images
    are paid for: they must survive the run; streamed, so 80 full-size images never sit in memory
    at once), then mark the record with the batch's final state and each key's outcome."""
    outcomes: dict[str, str] = {}
    for kind in ("error", "output"):  # output last: a key in both counts as it succeeded
        file_id = getattr(batch, f"{kind}_file_id", None)
        if not file_id:
            continue
        with client.files.with_streaming_response.content(file_id) as response:
            for text in response.iter_lines():
                if not text.strip():
                    continue
                line = json.loads(text)
                key = str(line.get("custom_id"))
                write_text(folder / batch.id / f"{key}.json", text)
                outcomes[key] = "ok" if _line_ok(line) else "failed"
    record.update(status=batch.status, outcomes=outcomes,
                  request_counts=batch.request_counts.model_dump() if batch.request_counts else {},
                  errors=[e.message for e in (batch.errors.data if batch.errors and batch.errors.data else [])],
                  finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    write_json(_record_path(folder, record), record)  # last: a run stopped before this finishes again
    return record


def _line(record: dict, key: str, folder: Path) -> dict | None:
    path = folder / str(record.get("batch_id")) / f"{key}.json"
    return read_json(path) if path.exists() else None


def _line_result(record: dict, shot: dict, settings: dict, folder: Path):
    key, batch_id = shot["key"], record["batch_id"]
    opts = _opts_of(shot, settings)
    request = record["requests"].get(key, {})
    params = request.get("params") or images_request(shot.get("model", ""), opts, shot)
    line = _line(record, key, folder)
    if line is None:
        why = "; ".join(record.get("errors", [])) or f"the batch ended {record['status']} without this request"
        if record["status"] == "failed":  # rejected as a whole (validation): the request itself is at fault
            raise OpenAIConfigError(f"batch {batch_id} failed as a whole: {why}. Check generate.model, "
                                    "plan.width/height and generate.openai; then run snakemake again")
        raise ShotFailed(f"batch {batch_id} ({record['status']}): {why}")
    response = line.get("response") or {}
    body = response.get("body") or {}
    if not _line_ok(line):
        error = line.get("error") or body.get("error") or {}
        raise classify_error(response.get("status_code"), str(error.get("code") or ""),
                             str(error.get("message") or "the batch reported no reason"), str(error.get("param") or ""),
                             response.get("request_id"), opts, params.get("model", ""), retried=False)
    item = (body.get("data") or [None])[0] or {}
    return image_result(item.get("b64_json"), item.get("revised_prompt"), body.get("usage") or {},
                        response.get("request_id"), params, params.get("model", ""), opts,
                        batch={"id": batch_id, "price": "batch"})


def _say(line: str, out: IO[str]) -> None:
    """A progress line for the job's log and the terminal (these jobs are threads of snakemake)."""
    print(line, file=out, flush=True)
    if out is not sys.stderr:
        print(line, file=sys.stderr, flush=True)
