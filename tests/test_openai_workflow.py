"""The whole workflow on the openai backends, against the loopback stand-in, with injected faults."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from c2pa_signing import ISSUER, sign_png
from conftest import TEST_CONFIG, _env
from openai_standin import StandIn

pytestmark = pytest.mark.workflow

KEY = "sk-test-SECRET-6f1d2c9a7b"
KEY_ENV = "SYNTHLORA_TEST_OPENAI_KEY"
WAVING = "waving one hand"  # the plan's phrase for the 'waving' pose: the stand-in refuses it


def openai_config(url: str, max_concurrent: int = 1, generate_extra: str = "") -> str:
    conn = f"base_url: {url}\n    api_key_env: {KEY_ENV}\n    timeout: 5\n    max_retries: 3\n"
    return (
        f"max_concurrent_api_calls: {max_concurrent}\n"
        f"analyze:\n  backend: openai\n  model: gpt-5.5\n  openai:\n    {conn}"
        f"generate:\n  backend: openai\n  model: gpt-image-2\n  openai:\n    {conn}    quality: low\n{generate_extra}"
        f"caption:\n  backend: openai\n  model: gpt-5.5\n  openai:\n    {conn}"
    )


CONFIGS = (*TEST_CONFIG, "config/openai.yaml")


@pytest.fixture
def api():
    with StandIn(key=KEY, latency=0.3) as server:
        yield server


def images_calls(api):
    return api.calls_to("/images/")


def selection(wf):
    with open(wf.path("results/mira/selection.tsv"), newline="") as f:
        return {r["key"]: r for r in csv.DictReader(f, delimiter="\t")}


def test_full_run_with_faults_records_failures_keeps_the_key_secret_and_reruns_only_when_asked(fresh, api):
    fresh.path("config/openai.yaml").write_text(openai_config(api.url, max_concurrent=1))
    env = {KEY_ENV: KEY}
    api.fault("moderation", match=WAVING, endpoint="/images/")
    api.fault("429", count=2, endpoint="/images/")
    api.fault("500", count=1, endpoint="/images/")
    api.fault("drop", count=1, endpoint="/chat/")
    api.sign = sign_png  # every image carries Content Credentials, as OpenAI's do

    estimate = subprocess.run([sys.executable, "-m", "synthlora.generation", "estimate", "--configfile", *CONFIGS],
                              cwd=fresh.root, capture_output=True, text=True, env=_env(env), check=True).stdout
    assert "generate  gpt-image-2: 8 calls, 8 images" in estimate and "caption" in estimate, estimate
    assert not api.calls, "the estimate spends nothing"

    run = fresh.snakemake(configfiles=CONFIGS, env=env)
    plan = json.loads(fresh.path("results/mira/plan.json").read_text())["shots"]
    refused = {s["key"] for s in plan if WAVING in s["prompt"]}
    assert 0 < len(refused) < len(plan)
    assert images_calls(api) == len(plan) + 3, "each transient fault costs one retry, refusals none"
    assert api.max_in_flight == 1, "max_concurrent_api_calls bounds the calls in flight"

    report = json.loads(fresh.path("results/mira/generation_report.json").read_text())
    assert {f["key"] for f in report["failed"]} == refused
    assert all("moderation" in f["reason"] for f in report["failed"])
    assert report["ok"] == len(plan) - len(refused) and report["usage"]["output_tokens"] > 0
    assert report["reference_input"] is False
    for key in refused:
        assert "failed shot" in run.output and key in run.output, "the run ends with the failed shots"
        row = selection(fresh)[key]
        assert row["selected"] == "no" and row["reason"].startswith("generation failed: refused by moderation")
    ok = [s for s in plan if s["key"] not in refused]
    for s in ok:
        prov = json.loads(fresh.path(f"results/mira/images/{s['key']}.json").read_text())
        assert prov["status"] == "ok" and prov["model"] == "gpt-image-2" and prov["request_id"]
        assert prov["revised_prompt"] and prov["usage"]["total_tokens"] > 0
    assert fresh.path("results/mira/lora/mira.safetensors").is_file()
    for caption in fresh.root.glob("results/mira/captions/*.txt"):
        assert caption.read_text().startswith("mira_sl, ")

    # What was spent, per stage, summed from the server's own usage records.
    spent = json.loads(fresh.path("results/mira/api_usage.json").read_text())
    stages = spent["stages"]
    captions = list(fresh.root.glob("results/mira/captions/*.txt"))
    assert stages["analyze"]["calls"] >= 1 and stages["analyze"]["prompt_tokens"] > 0
    assert stages["generate"]["images"] == report["ok"]
    assert stages["generate"]["output_tokens"] == report["usage"]["output_tokens"]
    assert stages["caption"]["calls"] >= len(captions) > 0 and stages["caption"]["completion_tokens"] > 0
    assert spent["total"]["calls"] == sum(st["calls"] for st in stages.values())
    assert "API spend so far" in run.output
    card = fresh.path("results/mira/MODEL_CARD.md").read_text()
    assert f"API usage behind these results: {spent['total']['calls']} calls" in card
    assert "never an input to image generation" in card
    n_train = len(list(fresh.root.glob("results/mira/captions/*.txt")))
    assert f"Content Credentials (C2PA): {n_train} of {n_train} training images carry them, {n_train} validate" in card
    assert ISSUER in card

    leaked = [str(p) for p in fresh.root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaked and KEY not in run.output, f"the API key leaked into {leaked}"

    # Unchanged shots make no API call; failed ones are not retried unless asked.
    calls = len(api.calls)
    again = fresh.snakemake(configfiles=CONFIGS, env=env)
    assert "Nothing to be done" in again.output and len(api.calls) == calls

    api.clear_faults()
    subprocess.run([sys.executable, "-m", "synthlora.generation", "retry-failed", "results/mira"],
                   cwd=fresh.root, check=True, env=_env())
    retried = fresh.snakemake(configfiles=CONFIGS, env=env)
    assert fresh.jobs(retried)["generate"] == len(refused)
    assert images_calls(api) == len(plan) + 3 + len(refused)
    assert json.loads(fresh.path("results/mira/generation_report.json").read_text())["failed"] == []


def test_missing_key_fails_before_any_job_naming_the_variable(fresh, api):
    fresh.path("config/openai.yaml").write_text(openai_config(api.url))
    proc = fresh.snakemake(configfiles=CONFIGS, check=False, env={KEY_ENV: ""})
    assert proc.returncode != 0 and KEY_ENV in proc.output
    assert not fresh.jobs(proc) and not fresh.path("results").exists() and not api.calls


def test_interrupting_generation_leaves_no_image_a_later_run_trusts(fresh, api):
    api.latency = 3.0  # every image call hangs long enough to be interrupted
    fresh.path("config/openai.yaml").write_text(openai_config(api.url, max_concurrent=2))
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", *CONFIGS]
    proc = subprocess.Popen(cmd, cwd=fresh.root, env=_env({KEY_ENV: KEY}), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (images_calls(api) < 3 or api.in_flight == 0):
        time.sleep(0.1)
    assert api.in_flight, "generation was under way"
    os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the whole process group
    proc.communicate(timeout=120)
    images = fresh.root / "results/mira/images"
    for png in images.glob("*.png"):
        prov = json.loads(png.with_suffix(".json").read_text())
        assert prov["status"] == "ok" and png.stat().st_size > 100
    assert not list(images.glob(".*.tmp*")), "no temporary file is left behind"
    done = len(list(images.glob("*.png")))
    rest = fresh.snakemake("-n", configfiles=CONFIGS, env={KEY_ENV: KEY})
    assert fresh.jobs(rest)["generate"] == 8 - done, "the interrupted shots, and only they, are made again"


def test_batch_mode_submits_once_exits_saying_how_to_resume_and_a_rerun_collects_the_same_batch(fresh, api):
    api.latency = 0
    api.batch_hold = True
    batch = "    batch: true\n    batch_poll_seconds: 0.05\n"
    config = openai_config(api.url, max_concurrent=2, generate_extra=batch)
    fresh.path("config/openai.yaml").write_text(openai_config(api.url, 2, batch + "    batch_wait_hours: 0\n"))
    target = "results/mira/generation_report.json"
    first = fresh.snakemake(target, configfiles=CONFIGS, env={KEY_ENV: KEY}, check=False)
    assert first.returncode != 0 and "run snakemake again later" in first.output, first.output[-3000:]
    assert len(api.batches) == 1 and images_calls(api) == 0
    assert not list(fresh.root.glob("results/mira/images/*.png"))

    api.batch_hold = False
    fresh.path("config/openai.yaml").write_text(config)
    fresh.snakemake(target, configfiles=CONFIGS, env={KEY_ENV: KEY})
    assert len(api.batches) == 1 and sum(p == "/v1/files" for p, _ in api.calls) == 1, "the same batch, polled"
    report = json.loads(fresh.path(target).read_text())
    assert report["ok"] == 8 and images_calls(api) == 0
    leaked = [str(p) for p in fresh.root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert not leaked


def test_when_every_shot_fails_the_run_stops_before_selection_saying_why(fresh, api):
    api.latency = 0
    fresh.path("config/openai.yaml").write_text(openai_config(api.url, max_concurrent=2))
    api.fault("moderation", endpoint="/images/")
    run = fresh.snakemake(configfiles=CONFIGS, env={KEY_ENV: KEY}, check=False)
    assert run.returncode != 0
    assert "only 0 of 8 shots produced an image" in run.output and "8× refused by moderation" in run.output
    assert run.output.count("failed shot ") >= 8, "the failed-shot summary prints on failure too"
    assert not fresh.path("results/mira/selection.tsv").exists() and not fresh.jobs(run)["caption"]
    assert images_calls(api) == 8
