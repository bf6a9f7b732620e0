"""Paid-API bookkeeping: key checks, failed-shot records, the generation report, spend estimates.

A shot that produced no image (refused by moderation, or still failing after the client's
retries) is recorded, not fatal: ``images/{key}.json`` says ``status: failed`` and why, and
``images/{key}.png`` holds a marker that is not an image, so scoring marks it undecodable and
selection rejects it with the recorded reason. Snakemake sees the job as done, so a later run
does not pay for it again unless asked: ``python -m synthlora.generation retry-failed`` removes
the failed records, and the next run regenerates exactly those shots.

No torch here: the light rules import this module.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from synthlora.config import ConfigError, config_files, load_config
from synthlora.io import atomic_path, read_json, write_json

API_STAGES = ("analyze", "generate", "caption")
FAILED_MARKER = b"synthlora: generation failed, no image; the reason is in the .json beside this file\n"


def uses_api(config: dict, stage: str) -> bool:
    return config[stage]["backend"] == "openai"


def check_api_keys(config: dict, environ=os.environ) -> None:
    """A stage on the openai backend needs its key variable set: say so before any job runs."""
    for stage in API_STAGES:
        if not uses_api(config, stage):
            continue
        var = config[stage]["openai"]["api_key_env"]
        if var and not environ.get(var):
            raise ConfigError(
                f"{stage}.backend is 'openai' but the environment variable {var} is not set: export {var}=<your key> "
                f"(or name another variable in {stage}.openai.api_key_env; '' for a server that needs no key)")


# Set when the snakemake process is interrupted (Ctrl-C): generate jobs running as its threads
# then write nothing, so no output of an interrupted job exists for a later run to trust.
CANCELLED = threading.Event()


class GenerationCancelled(RuntimeError):
    pass


# Set when a generate job met an account-level refusal (no quota, bad key, billing, unknown model)
# or a request the server rejects as malformed: every other shot would fail the same way, so the
# jobs that start after it in this process make no call and fail with the same message.
STOPPED: dict[str, str] = {}


class StageStopped(RuntimeError):
    pass


class TooFewGenerated(RuntimeError):
    pass


def cancel_on_interrupt() -> None:
    """Make SIGINT (Ctrl-C) reach the generate jobs that run as threads of the snakemake process:
    flag them, close the API clients so calls in flight end now, then interrupt as before.
    (SIGTERM stays Snakemake's graceful stop: running jobs finish and are kept.)"""
    if threading.current_thread() is not threading.main_thread() or getattr(cancel_on_interrupt, "installed", False):
        return
    previous = signal.getsignal(signal.SIGINT)

    def interrupted(signum, frame):
        CANCELLED.set()
        from synthlora.backends.openai_api import close_clients

        close_clients()
        if callable(previous):
            previous(signum, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    cancel_on_interrupt.installed = True


def generate_shot(shot: dict, gen_cfg: dict, reference: str | None, image_path: str | Path,
                  provenance_path: str | Path, out: IO[str] = sys.stdout, background=(255, 255, 255),
                  generator=None) -> None:
    """Render one planned shot into image_path + its provenance record. A shot the backend could not
    make (moderation, exhausted retries) or whose picture is unusable (a truncated reply, a file
    that is no image, a decompression bomb) is recorded as failed, not raised: the other shots go
    on and selection rejects this one with the reason. A picture in another encoding (16-bit,
    CMYK, palette, transparent: flattened onto ``background``, animated: its first frame) is
    converted and the conversion recorded. Progress and errors go to ``out`` (the job log), never
    to sys.stdout, as this also runs in threads of the snakemake process. ``generator``: one already
    loaded for generator_settings() (a model server's), else one is made here."""
    from synthlora.backends import make_generator
    from synthlora.backends.base import ShotFailed
    from synthlora.intake import PictureProblem, as_rgb, raised_by_decoder

    if "generate" in STOPPED:
        raise StageStopped(f"shot {shot['key']} not requested: {STOPPED['generate']}")

    settings = generator_settings(shot, gen_cfg, background)
    started = time.time()
    record = {"shot": shot, "source": "folder" if shot.get("backend") == "folder" else "generated",
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def failed(reason: str, request_id: str | None = None) -> None:
        print(f"shot {shot['key']} failed: {reason}", file=out)
        write_failed_shot(image_path, provenance_path, {
            **record, "reason": reason, "request_id": request_id, "model": settings.get("model", ""),
            "seconds": round(time.time() - started, 3)})

    try:
        if shot.get("backend") == "openai" and settings["openai"].get("batch"):
            from synthlora.backends.openai_batch import batch_result

            image, extra = batch_result(shot, settings, reference, Path(image_path).parent, out)
        else:
            image, extra = (generator or make_generator(settings, reference)).generate(shot)
        image, notes = as_rgb(image, background)
    except ShotFailed as exc:
        if CANCELLED.is_set():  # the failure is the interruption closing the connection
            raise GenerationCancelled(f"shot {shot['key']}: run interrupted, nothing written") from None
        return failed(exc.reason, exc.request_id)
    except PictureProblem as exc:
        return failed(f"the picture is unusable: {exc}")
    except Exception as exc:
        from synthlora.backends.openai_api import OpenAIConfigError

        if isinstance(exc, OpenAIConfigError):  # account-level or malformed: stop the stage here
            STOPPED.setdefault("generate", str(exc))
            print(f"shot {shot['key']}: {exc}", file=out)
            raise
        if not raised_by_decoder(exc):
            raise
        return failed(f"the picture could not be decoded ({type(exc).__name__}: {str(exc)[:200]})")
    if notes:
        extra = {**extra, "converted": list(extra.get("converted", [])) + [n for n in notes if n not in extra.get("converted", [])]}
    if CANCELLED.is_set():
        raise GenerationCancelled(f"shot {shot['key']}: run interrupted, nothing written")
    # Provenance first, image last: both are atomic, and an interrupted job's outputs are removed
    # by Snakemake and marked incomplete, so neither is trusted alone.
    write_json(provenance_path, {**record, "status": "ok", **extra, "seconds": round(time.time() - started, 3)})
    with atomic_path(image_path) as tmp:
        image.save(tmp, format="PNG")
    print(f"shot {shot['key']}: {image.width}x{image.height} in {time.time() - started:.1f} s", file=out)


def generator_settings(shot: dict, gen_cfg: dict, background=(255, 255, 255)) -> dict:
    """What make_generator() needs for this shot. The shot's own pixel settings win over today's
    config: they are what its key names."""
    return {**{k: shot[k] for k in ("backend", "model", "dtype") if k in shot},
            "device": gen_cfg["device"], "openai": {**gen_cfg["openai"], **shot.get("openai", {})},
            "background": background, "model_options": gen_cfg.get("model_options", {})}


def generate_shot_in_thread(log_path: str, shot: dict, gen_cfg: dict, reference: str | None,
                            image_path: str, provenance_path: str, background=(255, 255, 255)) -> None:
    """generate_shot() as a `run:` job, a thread of the snakemake process, logging to log_path."""
    from synthlora.scripting import thread_job

    with thread_job(log_path) as out:
        generate_shot(shot, gen_cfg, reference, image_path, provenance_path, out=out, background=background)


def write_failed_shot(image_path: str | Path, provenance_path: str | Path, record: dict) -> None:
    """The outputs of a shot that produced no image: the marker, then the record that explains it."""
    with atomic_path(image_path) as tmp:
        tmp.write_bytes(FAILED_MARKER)
    write_json(provenance_path, {**record, "status": "failed"})


def is_failed(provenance: dict) -> bool:
    return provenance.get("status") == "failed"


def generation_report(provenance_files: list[str | Path]) -> dict[str, Any]:
    """Shots ok/failed with reasons, summed API usage, and whether the reference was an input."""
    failed, usage, requests, ok = [], {}, 0, 0
    reference_input = False
    sources: dict[str, int] = {}
    for path in provenance_files:
        prov = read_json(path)
        shot = prov.get("shot", {})
        sources[prov.get("source", "generated")] = sources.get(prov.get("source", "generated"), 0) + 1
        reference_input |= bool(prov.get("reference_input"))
        if prov.get("request_id") or prov.get("usage"):
            requests += 1
        for name, value in _flat_usage(prov.get("usage", {})).items():
            usage[name] = usage.get(name, 0) + value
        if is_failed(prov):
            failed.append({"key": shot.get("key"), "index": shot.get("index"), "reason": prov.get("reason", "")})
        else:
            ok += 1
    return {
        "shots": len(provenance_files), "ok": ok, "failed": failed, "sources": sources,
        "api_images_billed": requests, "usage": dict(sorted(usage.items())),
        "reference_input": reference_input,
        "note": ("the reference image was an input of image generation (generate.openai.reference_mode)"
                 if reference_input else "images were generated from text only; the reference was used for analysis"),
        "retry": "python -m synthlora.generation retry-failed results/<character> (then run snakemake again)"
                 if failed else "",
    }


def _flat_usage(usage: dict, prefix: str = "") -> dict[str, int]:
    out = {}
    for k, v in usage.items():
        if isinstance(v, dict):
            out.update(_flat_usage(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = v
    return out


def api_usage(analysis_usage: str | Path, provenance_files: list[str | Path],
              caption_usage_files: list[str | Path]) -> dict[str, Any]:
    """API usage actually spent on one character's current results, per stage and in total: calls,
    images and the token counts the server reported (every field of its usage records, summed)."""
    stages: dict[str, dict[str, Any]] = {}

    def add(stage: str, records: list[dict], images: int = 0) -> None:
        s = stages.setdefault(stage, {"calls": 0, "images": 0})
        s["images"] += images
        for rec in records:
            s["calls"] += 1
            for name, value in _flat_usage(rec).items():
                s[name] = s.get(name, 0) + value

    add("analyze", read_json(analysis_usage))
    for path in provenance_files:
        prov = read_json(path)
        if prov.get("request_id") or prov.get("usage"):  # an API call was made (and billed) for it
            add("generate", [prov.get("usage", {})], images=0 if is_failed(prov) else 1)
    for path in caption_usage_files:
        add("caption", read_json(path))
    total: dict[str, Any] = {}
    for s in stages.values():
        for name, value in s.items():
            total[name] = total.get(name, 0) + value
    return {"stages": {k: dict(sorted(v.items())) for k, v in stages.items()}, "total": dict(sorted(total.items()))}


def failure_counts(report: dict) -> dict[str, int]:
    """Failed shots per reason, the reason without its per-request detail (what follows its ':')."""
    counts: dict[str, int] = {}
    for f in report["failed"]:
        reason = str(f.get("reason", "")).split(":")[0].strip() or "no reason recorded"
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def too_few_generated(report: dict, min_count: int, character: str = "") -> str | None:
    """The message that stops a run before selection when fewer shots produced an image than
    select.min_count: nothing is selected, captioned or trained on (almost) nothing."""
    if report["ok"] >= int(min_count) or not report.get("sources", {}).get("generated"):
        return None  # (a folder of your own images: selection reports its unreadable files, with its sheet)
    reasons = "; ".join(f"{n}× {reason}" for reason, n in failure_counts(report).items())
    who = f"{character}: " if character else ""
    return (f"{who}only {report['ok']} of {report['shots']} shots produced an image, fewer than select.min_count "
            f"({min_count}); stopping before selection (no captions, no training). Failed: {reasons}. Fix the "
            f"cause, then {(report['retry'] or 'run snakemake again').replace('<character>', character or '<character>')}.")


def _report_so_far(results_dir: Path) -> dict | None:
    """The generation report of the planned shots whose records exist (a run that stopped early)."""
    try:
        keys = [s["key"] for s in read_json(results_dir / "plan.json")["shots"]]
    except (OSError, ValueError, KeyError):
        return None
    files = [p for k in keys if (p := results_dir / "images" / f"{k}.json").exists()]
    if not files:
        return None
    rep = generation_report(files)
    rep["note"] = f"{len(keys) - len(files)} planned shot(s) not made yet"
    rep["shots"] = len(files)
    return rep


def summary_lines(report_files: list[str | Path]) -> list[str]:
    """What the end of a run prints (on success and on failure): per character, failed shots and why.
    A character without a report yet (the run stopped before it) is summed from its records so far."""
    lines = []
    for path in report_files:
        if Path(path).exists():
            rep = read_json(path)
        else:
            rep = _report_so_far(Path(path).parent)
            if rep is None:
                continue
        character = Path(path).parent.name
        lines.append(f"{character}: {rep['ok']} of {rep['shots']} shots generated, {len(rep['failed'])} failed; "
                     f"{rep['note']}")
        for f in rep["failed"]:
            lines.append(f"  failed shot {f['index']} ({f['key']}): {f['reason']}")
        if rep["failed"]:
            lines.append(f"  to retry them: {rep['retry']}")
        usage_file = Path(path).with_name("api_usage.json")
        total = read_json(usage_file)["total"] if usage_file.exists() else {}
        if total.get("calls"):
            lines.append(f"  API spend so far: {total['calls']} calls, {total['images']} images, "
                         f"{total.get('input_tokens', total.get('prompt_tokens', 0))} input and "
                         f"{total.get('output_tokens', total.get('completion_tokens', 0))} output tokens "
                         f"({usage_file})")
    return lines


def retry_failed(results_dir: str | Path) -> list[str]:
    """Remove the records of failed shots under ``results_dir/images`` so the next run makes them."""
    removed = []
    for prov_path in sorted(Path(results_dir, "images").glob("*.json")):
        try:
            prov = read_json(prov_path)
        except (OSError, ValueError):
            continue
        if is_failed(prov):
            prov_path.with_suffix(".png").unlink(missing_ok=True)
            prov_path.unlink()
            removed.append(prov_path.stem)
    return removed


# ---- spend estimate -------------------------------------------------------------------------


def estimate(config: dict, results_root: str | Path = "results") -> dict[str, Any]:
    """Calls, images and tokens a run would spend, roughly, before it spends anything.

    Images already generated (recorded ok under results/) are not counted again. Token counts are
    rough: text at ~4 characters a token, an image at ``IMAGE_TOKENS`` by detail level."""
    stages: dict[str, dict[str, Any]] = {}
    n_chars = len(config["characters"])
    if uses_api(config, "analyze"):
        a = config["analyze"]
        text = sum(len(Path(ch["description"]).read_text(encoding="utf-8")) for ch in config["characters"].values())
        text += n_chars * len(Path(a["instruction"]).read_text(encoding="utf-8"))
        tokens_in = text // 4 + n_chars * IMAGE_TOKENS[a["openai"]["image_detail"]]
        tokens_out = n_chars * 600
        stages["analyze"] = _chat_stage(n_chars, a["retries"] * n_chars, tokens_in, tokens_out, a)
    if uses_api(config, "generate"):
        todo = 0
        for name in config["characters"]:
            todo += config["plan"]["candidates"] - _already_generated(Path(results_root, name), config)
        from synthlora.backends.openai_batch import BATCH_PRICE_FACTOR

        usd = todo * config["generate"]["openai"]["usd_per_image"]
        batch = bool(config["generate"]["openai"].get("batch"))
        stages["generate"] = {"model": config["generate"]["model"], "calls": todo, "images": todo,
                              "usd": round(usd * (BATCH_PRICE_FACTOR if batch else 1), 2),
                              "usd_synchronous": round(usd, 2), "usd_batch": round(usd * BATCH_PRICE_FACTOR, 2),
                              "batch": batch}
    if uses_api(config, "caption"):
        c = config["caption"]
        calls = n_chars * config["select"]["count"]
        tokens_in = calls * (len(c["instruction"]) // 4 + 40 * len(c["categories"]) + IMAGE_TOKENS[c["openai"]["image_detail"]])
        stages["caption"] = _chat_stage(calls, calls * c["openai"]["retries"], tokens_in, calls * 40, c)
    if uses_api(config, "caption") and (config["select"]["vlm_questions"] or config["select"]["feature_checks"]):
        # rule ask: one call per candidate with all its questions (select.vlm_questions, and one per
        # must-preserve feature, which the analysis has not written yet: ~8 assumed, ~30 tokens each)
        c = config["caption"]
        calls = n_chars * config["plan"]["candidates"]
        questions = len(config["select"]["vlm_questions"]) + (8 if config["select"]["feature_checks"] else 0)
        tokens_in = calls * (20 + 30 * questions + IMAGE_TOKENS[c["openai"]["image_detail"]])
        stages["ask"] = _chat_stage(calls, calls * c["openai"]["retries"], tokens_in, calls * 8 * questions, c)
    total = round(sum(s["usd"] for s in stages.values()), 2)
    return {"stages": stages, "usd_total": total,
            "max_concurrent_api_calls": config["max_concurrent_api_calls"]}


# Rough image input tokens for chat models (a 1024-px image at high detail is ~765 tokens on
# OpenAI's tiling scheme; low detail is a fixed 85).
IMAGE_TOKENS = {"low": 85, "high": 765, "auto": 765}


def _chat_stage(calls: int, extra_calls_at_most: int, tokens_in: int, tokens_out: int, stage_cfg: dict) -> dict:
    o = stage_cfg["openai"]
    usd = tokens_in / 1e6 * o["usd_per_million_input_tokens"] + tokens_out / 1e6 * o["usd_per_million_output_tokens"]
    return {"model": stage_cfg["model"], "calls": calls, "extra_calls_if_answers_fail_validation": extra_calls_at_most,
            "input_tokens": tokens_in, "output_tokens": tokens_out, "usd": round(usd, 2)}


def _already_generated(results: Path, config: dict) -> int:
    plan = results / "plan.json"
    if not plan.exists():
        return 0
    done = 0
    for shot in read_json(plan)["shots"][: config["plan"]["candidates"]]:
        prov = results / "images" / f"{shot['key']}.json"
        if prov.exists() and (results / "images" / f"{shot['key']}.png").exists() and not is_failed(read_json(prov)):
            done += 1
    return done


def format_estimate(est: dict) -> str:
    lines = ["What this run would call (before spending anything):"]
    if not est["stages"]:
        lines.append("  no stage uses a paid API backend")
    for stage, s in est["stages"].items():
        detail = f"{s['calls']} calls"
        if "images" in s:
            detail += f", {s['images']} images"
        if "input_tokens" in s:
            detail += (f", ~{s['input_tokens']} input + ~{s['output_tokens']} output tokens"
                       f" (+ up to {s['extra_calls_if_answers_fail_validation']} retry calls)")
        if "usd_batch" in s:  # the Images API: both prices, the one this config pays first
            prices = [f"~${s['usd_synchronous']:.2f} synchronous", f"~${s['usd_batch']:.2f} with the Batch API"]
            detail += (f", {' / '.join(prices[::-1] if s['batch'] else prices)} "
                       f"(generate.openai.batch: {'on' if s['batch'] else 'off'})")
            lines.append(f"  {stage:9s} {s['model']}: {detail}")
            continue
        lines.append(f"  {stage:9s} {s['model']}: {detail}, ~${s['usd']:.2f}")
    lines.append(f"  total ~${est['usd_total']:.2f} (prices from config: *.openai.usd_per_*); "
                 f"at most {est['max_concurrent_api_calls']} calls at once")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthlora.generation", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="print the API calls, images, tokens and rough cost a run would spend")
    est.add_argument("--configfile", nargs="+", default=[], help="config files, as given to snakemake")
    est.add_argument("--json", action="store_true", help="print JSON")
    retry = sub.add_parser("retry-failed", help="forget failed shots so the next run generates them again")
    retry.add_argument("results", nargs="+", help="results/<character> folders")
    summ = sub.add_parser("summary", help="print the failed shots of finished runs")
    summ.add_argument("results", nargs="+", help="results/<character> folders")
    args = parser.parse_args(argv)
    if args.command == "estimate":
        print(f"config files read: {' + '.join(config_files(args.configfile))}", file=sys.stderr)
        try:
            cfg = load_config(args.configfile)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        result = estimate(cfg)
        print(json.dumps(result, indent=2) if args.json else format_estimate(result))
    elif args.command == "retry-failed":
        for folder in args.results:
            keys = retry_failed(folder)
            print(f"{folder}: {len(keys)} failed shot(s) will be generated on the next run"
                  + (f": {', '.join(keys)}" if keys else ""))
    else:
        print("\n".join(summary_lines([Path(f, "generation_report.json") for f in args.results])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
