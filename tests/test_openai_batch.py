"""Keys that hold what is sent, account-level stops, the Batch API path and Content Credentials,
through the generate job's own function (generate_shot) against the loopback stand-in."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from c2pa_signing import GENERATOR, ISSUER, sign_png
from openai_standin import StandIn
from synthlora import generation
from synthlora.backends import openai_batch
from synthlora.backends.openai_api import AccountError
from synthlora.backends.openai_batch import BatchPending
from synthlora.generation import (StageStopped, generate_shot, generation_report, retry_failed, summary_lines,
                                  too_few_generated)
from synthlora.io import read_json, write_json
from synthlora.plan import make_plan, pixel_inputs, shot_keys

KEY = "sk-test-batch-0123456789"
REPO = Path(__file__).resolve().parents[1]
FEATURES = json.loads((REPO / "characters/mira/features.json").read_text())


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Each test is a new snakemake process: no stage stopped, no batch given up on."""
    generation.STOPPED.clear()
    openai_batch._GAVE_UP.clear()
    yield
    generation.STOPPED.clear()
    openai_batch._GAVE_UP.clear()


@pytest.fixture
def api(monkeypatch):
    monkeypatch.setenv("STANDIN_KEY", KEY)
    with StandIn(key=KEY) as server:
        yield server


def defaults():
    from snakemake.utils import validate

    cfg = {"characters": {"mira": {"reference": "r", "description": "d", "trigger": "t"}}}
    validate(cfg, str(REPO / "config/config.schema.yaml"), set_default=True)
    return cfg


def generate_cfg(api, **openai):
    cfg = defaults()["generate"]
    cfg.update(backend="openai", model="gpt-image-2")
    cfg["openai"].update({"base_url": api.url, "api_key_env": "STANDIN_KEY", "timeout": 2, "max_retries": 3,
                          "quality": "low", "batch_poll_seconds": 0.02, **openai})
    return cfg


def planned(tmp_path, gen, n=6, **plan):
    """A character folder with a plan of n openai shots (64 px), as rule plan writes it."""
    cfg = defaults()
    cfg["plan"].update(candidates=n, width=64, height=64, **plan)
    shots = make_plan(FEATURES, cfg["plan"], pixel_inputs(gen))["shots"]
    write_json(tmp_path / "results/mira/plan.json", {"shots": shots})
    return shots


def run(tmp_path, shots, gen, reference=None):
    """Every shot's generate job, one after another, as a run would; what each raised."""
    images = tmp_path / "results/mira/images"
    raised = {}
    for s in shots:
        try:
            generate_shot(s, gen, reference, images / f"{s['key']}.png", images / f"{s['key']}.json",
                          out=open(tmp_path / "log.txt", "a"))
        except Exception as exc:  # noqa: BLE001 (the test inspects it)
            raised[s["key"]] = exc
    return raised


def prov(tmp_path, key):
    return read_json(tmp_path / f"results/mira/images/{key}.json")


# ---- 1. keys = what is sent --------------------------------------------------------------


def test_a_field_the_images_api_never_gets_changes_no_key_and_identical_requests_stay_distinct(api):
    cfg = defaults()
    gen = generate_cfg(api)
    base = make_plan(FEATURES, cfg["plan"], pixel_inputs(gen))["shots"]
    keys = [s["key"] for s in base]
    other = make_plan(FEATURES, {**cfg["plan"], "negative_prompt": "blurry, extra fingers"}, pixel_inputs(gen))
    assert [s["key"] for s in other["shots"]] == keys, "the negative prompt is not sent: no key changes"
    fields = ("backend", "model", "openai", "prompt", "negative_prompt", "seed", "width", "height")
    reseeded = [{**{k: s[k] for k in fields}, "seed": s["seed"] + 1} for s in base]
    assert shot_keys(reseeded) == keys, "the Images API takes no seed: a shot's seed is in no key"
    local = copy.deepcopy(gen)
    local.update(steps=5, guidance_scale=1.0, dtype="float16")
    local["openai"].update(moderation="low")  # sent: must change keys
    assert [s["key"] for s in make_plan(FEATURES, cfg["plan"], pixel_inputs(local))["shots"]] != keys
    local["openai"]["moderation"] = ""
    assert [s["key"] for s in make_plan(FEATURES, cfg["plan"], pixel_inputs(local))["shots"]] == keys
    edit = copy.deepcopy(gen)
    edit["openai"].update(reference_mode=True)
    with_mod = copy.deepcopy(edit)
    with_mod["openai"]["moderation"] = "low"  # images.edit takes no moderation: not sent, no new key
    assert ([s["key"] for s in make_plan(FEATURES, cfg["plan"], pixel_inputs(with_mod))["shots"]]
            == [s["key"] for s in make_plan(FEATURES, cfg["plan"], pixel_inputs(edit))["shots"]])
    sized = copy.deepcopy(gen)
    sized["openai"]["size"] = "1024x1024"  # then plan.width/height are not sent
    a = make_plan(FEATURES, cfg["plan"], pixel_inputs(sized))["shots"]
    b = make_plan(FEATURES, {**cfg["plan"], "width": 512, "height": 768}, pixel_inputs(sized))["shots"]
    assert [s["key"] for s in a] == [s["key"] for s in b]
    # No seed is sent: shots with the same prompt are the same request, told apart by their sample index.
    same = make_plan(FEATURES, {**cfg["plan"], **{dim: {"x": "same"} for dim in
                                                   ("views", "poses", "expressions", "lighting", "backgrounds")},
                                "framings": {"portrait": cfg["plan"]["framings"]["portrait"]}, "candidates": 5},
                     pixel_inputs(gen))["shots"]
    assert len({s["prompt"] for s in same}) == 1 and len({s["key"] for s in same}) == 5


def test_diffusers_keys_are_exactly_as_before_and_keep_the_negative_prompt():
    cfg = defaults()
    shots = make_plan(FEATURES, cfg["plan"], pixel_inputs(cfg["generate"]))["shots"]
    # keys of the default plan before keys were built per backend: existing images are not re-rendered
    assert [s["key"] for s in shots[:3]] == ["7fe43cb2041e006b", "0fd357fa983f9962", "c0c4db56b1e9676e"]
    assert shots[79]["key"] == "b76d1ddc9c8dcef5"
    moved = copy.deepcopy(cfg["generate"])
    moved["openai"].update(quality="high", batch=True)  # not sent by diffusers
    assert [s["key"] for s in make_plan(FEATURES, cfg["plan"], pixel_inputs(moved))["shots"]] == [s["key"] for s in shots]
    other = make_plan(FEATURES, {**cfg["plan"], "negative_prompt": "blurry"}, pixel_inputs(cfg["generate"]))["shots"]
    assert not {s["key"] for s in other} & {s["key"] for s in shots}, "diffusers renders the negative prompt"


# ---- 2. account-level errors stop the stage ---------------------------------------------


def test_exhausted_quota_stops_the_stage_at_the_first_request(tmp_path, api):
    gen = generate_cfg(api)
    shots = planned(tmp_path, gen, n=6)
    api.fault("quota", endpoint="/images/")
    raised = run(tmp_path, shots, gen)
    assert api.calls_to("/images/") == 1, "one request, not retried, and no other shot asked"
    first = raised[shots[0]["key"]]
    assert isinstance(first, AccountError) and "insufficient_quota" in str(first) and "Billing" in str(first)
    assert all(isinstance(raised[s["key"]], StageStopped) for s in shots[1:])
    assert "STANDIN_KEY" in str(first) and KEY not in str(first)
    assert not list((tmp_path / "results/mira/images").glob("*.png")), "nothing is recorded as a failed shot"


def test_a_refused_key_stops_the_stage_and_moderation_stays_per_shot(tmp_path, api, monkeypatch):
    gen = generate_cfg(api)
    shots = planned(tmp_path, gen, n=4)
    api.fault("moderation", match=shots[0]["prompt"], endpoint="/images/")
    raised = run(tmp_path, shots[:2], gen)
    assert not raised and prov(tmp_path, shots[0]["key"])["status"] == "failed", "a refusal fails one shot"
    assert prov(tmp_path, shots[1]["key"])["status"] == "ok"
    monkeypatch.setenv("WRONG_KEY", "sk-wrong")
    gen["openai"]["api_key_env"] = "WRONG_KEY"
    before = api.calls_to("/images/")
    raised = run(tmp_path, shots[2:], gen)
    assert api.calls_to("/images/") == before + 1
    assert isinstance(raised[shots[2]["key"]], AccountError) and "401" in str(raised[shots[2]["key"]])
    assert isinstance(raised[shots[3]["key"]], StageStopped)


# ---- 3. too few generated ------------------------------------------------------------------


def test_too_few_images_stop_before_selection_with_counts_per_reason(tmp_path, api):
    gen = generate_cfg(api, max_retries=0)
    shots = planned(tmp_path, gen, n=5)
    api.fault("moderation", count=3, endpoint="/images/")
    api.fault("503", count=1, endpoint="/images/")
    run(tmp_path, shots, gen)
    files = [tmp_path / f"results/mira/images/{s['key']}.json" for s in shots]
    report = generation_report(files)
    message = too_few_generated(report, 2, "mira")
    assert "only 1 of 5" in message and "3× refused by moderation (moderation_blocked)" in message
    assert "1× HTTP 503" in message and "retry-failed results/mira " in message
    assert too_few_generated(report, 1) is None
    # the run stopped before generation_report: the summary is built from the records so far
    lines = summary_lines([tmp_path / "results/mira/generation_report.json"])
    assert lines[0].startswith("mira: 1 of 5 shots generated, 4 failed") and len(lines) == 1 + 4 + 1


# ---- 4. the Batch API ---------------------------------------------------------------------


def test_batch_mode_sends_the_stale_shots_as_one_batch_and_writes_the_same_records(tmp_path, api):
    gen = generate_cfg(api, batch=True)
    shots = planned(tmp_path, gen, n=5)
    api.fault("moderation", match=shots[2]["prompt"], endpoint="/images/")
    api.sign = sign_png
    raised = run(tmp_path, shots, gen)
    assert not raised
    assert api.calls_to("/images/") == 0, "no synchronous image call"
    assert api.calls_to("/v1/batches") >= 2 and sum(p == "/v1/batches" for p, _ in api.calls) == 1
    assert sum(p == "/v1/files" for p, _ in api.calls) == 1
    (batch,) = api.batches.values()
    assert batch["request_counts"] == {"total": 5, "completed": 4, "failed": 1}
    lines = [json.loads(x) for x in api.files[batch["input_file_id"]]["bytes"].decode().splitlines()]
    assert [x["custom_id"] for x in lines] == [s["key"] for s in shots]
    assert all(x["url"] == "/v1/images/generations" and "negative_prompt" not in x["body"] for x in lines)
    ok = prov(tmp_path, shots[0]["key"])
    assert ok["status"] == "ok" and ok["batch"] == {"id": batch["id"], "price": "batch"}
    assert ok["request"]["size"] == "64x64" and ok["usage"]["output_tokens"] > 0 and ok["request_id"]
    cred = ok["content_credentials"]
    assert cred["present"] and cred["valid"] and cred["issuer"] == ISSUER
    assert cred["claim_generator"].startswith(GENERATOR) and cred["digital_source_type"] == "trainedAlgorithmicMedia"
    failed = prov(tmp_path, shots[2]["key"])
    assert failed["status"] == "failed" and "moderation" in failed["reason"]
    record = read_json(tmp_path / f"results/mira/batches/{batch['id']}.json")
    assert record["status"] == "completed" and record["keys"] == [s["key"] for s in shots]
    assert KEY not in json.dumps(record) and KEY not in (tmp_path / "log.txt").read_text()

    # retry-failed: only the refused shot goes out again, in a new batch of one
    api.clear_faults()
    assert retry_failed(tmp_path / "results/mira") == [shots[2]["key"]]
    (tmp_path / f"results/mira/images/{shots[0]['key']}.png").unlink()  # deleted by hand: paid, so reused
    raised = run(tmp_path, shots, gen)
    assert not raised and len(api.batches) == 2
    second = list(api.batches.values())[1]
    assert [json.loads(x)["custom_id"] for x in api.files[second["input_file_id"]]["bytes"].decode().splitlines()] \
        == [shots[2]["key"]]
    assert prov(tmp_path, shots[2]["key"])["status"] == "ok"
    assert prov(tmp_path, shots[0]["key"])["batch"]["id"] == batch["id"]


def test_an_interrupted_batch_run_resumes_polling_the_same_batch_without_paying_again(tmp_path, api):
    gen = generate_cfg(api, batch=True, batch_wait_hours=0)  # submit, then exit
    shots = planned(tmp_path, gen, n=4)
    api.batch_hold = True
    raised = run(tmp_path, shots, gen)
    assert all(isinstance(e, BatchPending) for e in raised.values()) and len(raised) == 4
    message = str(raised[shots[0]["key"]])
    assert "run snakemake again later" in message and "batch_0001" in message
    assert len(api.batches) == 1 and not list((tmp_path / "results/mira/images").glob("*.png"))

    openai_batch._GAVE_UP.clear()  # a new run (a new process)
    gen["openai"]["batch_wait_hours"] = 24
    api.batch_hold = False
    raised = run(tmp_path, shots, gen)
    assert not raised
    assert len(api.batches) == 1 and sum(p == "/v1/batches" for p, _ in api.calls) == 1, "polled, not resubmitted"
    assert sum(p == "/v1/files" for p, _ in api.calls) == 1
    assert all(prov(tmp_path, s["key"])["batch"]["id"] == "batch_0001" for s in shots)


def test_a_run_that_died_between_upload_and_batch_creation_adopts_that_batch(tmp_path, api):
    gen = generate_cfg(api, batch=True)
    shots = planned(tmp_path, gen, n=3)
    api.batch_hold = True
    gen["openai"]["batch_wait_hours"] = 0
    run(tmp_path, shots, gen)
    folder = tmp_path / "results/mira/batches"
    (path,) = folder.glob("*.json")
    record = read_json(path)
    path.unlink()  # as if the run had stopped right after the upload: only the input file is recorded
    record.update(batch_id=None, status="submitting")
    write_json(folder / f"{record['input_file_id']}.json", record)
    openai_batch._GAVE_UP.clear()
    gen["openai"]["batch_wait_hours"] = 24
    api.batch_hold = False
    assert not run(tmp_path, shots, gen)
    assert len(api.batches) == 1 and all(prov(tmp_path, s["key"])["status"] == "ok" for s in shots)


def test_an_expired_batch_records_the_unfinished_shots_as_failed(tmp_path, api):
    gen = generate_cfg(api, batch=True)
    shots = planned(tmp_path, gen, n=4)
    api.expire_after = 2
    assert not run(tmp_path, shots, gen)
    status = [prov(tmp_path, s["key"])["status"] for s in shots]
    assert status == ["ok", "ok", "failed", "failed"]
    assert "batch_expired" in prov(tmp_path, shots[3]["key"])["reason"]


# ---- 5. Content Credentials on the synchronous path ------------------------------------------


def test_synchronous_images_record_their_content_credentials(tmp_path, api):
    gen = generate_cfg(api)
    shots = planned(tmp_path, gen, n=2)
    run(tmp_path, shots[:1], gen)
    assert prov(tmp_path, shots[0]["key"])["content_credentials"] == {"present": False}
    api.sign = sign_png
    run(tmp_path, shots[1:], gen)
    cred = prov(tmp_path, shots[1]["key"])["content_credentials"]
    assert cred["valid"] and cred["issuer"] == ISSUER and cred["validation_state"] == "Valid"


def test_the_model_card_sums_up_the_credentials_of_the_training_images(tmp_path, api):
    from synthlora.model_card import credentials_lines, provenance_table

    gen = generate_cfg(api)
    shots = planned(tmp_path, gen, n=3)
    api.sign = sign_png
    run(tmp_path, shots, gen)
    files = [str(tmp_path / f"results/mira/images/{s['key']}.json") for s in shots]
    (line,) = credentials_lines(files)
    assert "3 of 3 training images carry them, 3 validate" in line and ISSUER in line and GENERATOR in line
    table = provenance_table(files, str(REPO / "characters/mira/reference.png"))
    assert table.splitlines()[0].split("\t")[-2] == "content_credentials"
    assert all(f"valid; issuer {ISSUER}" in row for row in table.splitlines()[1:])
    # a file whose pixels were changed after signing no longer validates, and the card says so
    raw = bytearray(sign_png(open(tmp_path / f"results/mira/images/{shots[0]['key']}.png", "rb").read()))
    raw[raw.find(b"IDAT") + 20] ^= 0xFF
    from synthlora.credentials import read_credentials

    cred = read_credentials(bytes(raw), "image/png")
    assert cred["present"] and not cred["valid"] and "assertion.dataHash.mismatch" in cred["failures"]


def test_estimate_prints_the_synchronous_and_the_batch_price():
    from synthlora.generation import estimate, format_estimate

    cfg = defaults()
    cfg["generate"].update(backend="openai", model="gpt-image-2")
    cfg["generate"]["openai"]["usd_per_image"] = 0.21
    text = format_estimate(estimate(cfg, "/nonexistent"))
    assert "80 calls, 80 images, ~$16.80 synchronous / ~$8.40 with the Batch API (generate.openai.batch: off)" in text
    cfg["generate"]["openai"]["batch"] = True
    est = estimate(cfg, "/nonexistent")
    assert est["usd_total"] == 8.4 and "~$8.40 with the Batch API / ~$16.80 synchronous" in format_estimate(est)


def test_a_chat_stage_out_of_quota_fails_at_once_naming_the_cause(api):
    from synthlora.backends import make_captioner
    from PIL import Image

    opts = {"base_url": api.url, "api_key_env": "STANDIN_KEY", "timeout": 2.0, "max_retries": 3, "image_detail": "low",
            "max_output_tokens": 0, "temperature": None, "retries": 1}
    captioner = make_captioner({"backend": "openai", "model": "gpt-5.5", "openai": opts})
    api.fault("quota", endpoint="/chat/")
    with pytest.raises(AccountError, match="caption.*insufficient_quota.*quota"):
        captioner.tag(Image.new("RGB", (8, 8)), {"views": ["front", "side"]}, "Tag it.")
    assert api.calls_to("/chat/") == 1


def test_batch_endpoints_out_of_quota_stop_the_stage_and_a_server_error_only_ends_the_wait(tmp_path, api):
    gen = generate_cfg(api, batch=True, max_retries=1)
    shots = planned(tmp_path, gen, n=3)
    api.fault("quota", endpoint="/v1/files")
    raised = run(tmp_path, shots, gen)
    assert isinstance(raised[shots[0]["key"]], AccountError) and "insufficient_quota" in str(raised[shots[0]["key"]])
    assert isinstance(raised[shots[1]["key"]], StageStopped) and not api.batches
    generation.STOPPED.clear()
    api.clear_faults()
    api.fault("503", endpoint="/v1/batches")
    raised = run(tmp_path, shots, gen)
    assert all(isinstance(e, BatchPending) and "run snakemake again" in str(e) for e in raised.values())
    assert not list((tmp_path / "results/mira/images").glob("*.json")), "no shot is recorded as failed"
    openai_batch._GAVE_UP.clear()
    api.clear_faults()  # the upload of the run before was never made into a batch: submitted now
    assert not run(tmp_path, shots, gen) and len(api.batches) == 1
    assert all(prov(tmp_path, s["key"])["status"] == "ok" for s in shots)
