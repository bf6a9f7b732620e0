"""Each local model is loaded once per run by its model server (synthlora.model_server), and what
the jobs write does not depend on it: the same files, byte for byte, as jobs that load their model
in their own process. Crashes, idle exits, load failures and job errors end as clear errors or a
fresh server, never a hung or silently wrong job."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from conftest import PYTHONPATH, REPO, TEST_CONFIG, new_workflow
from synthlora import model_server
from synthlora.model_server import Client, ModelServerError


def _loads(log: Path) -> int:
    return len(re.findall(r": model loaded in ", log.read_text()))


def _served(log: Path, job: str) -> int:
    return len(re.findall(rf": job {job} .*: ok in ", log.read_text()))


def _server_logs(wf, kind: str) -> list[Path]:
    return sorted(wf.path("logs/models").glob(f"{kind}-*.log"))


def _stop_servers(logs) -> None:
    """Stop the servers a test started (by the pids their logs name), not wait for their idle exit."""
    for log in logs:
        for pid in set(re.findall(r"pid (\d+): listening", log.read_text() if log.exists() else "")):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


# ---- through the workflow ---------------------------------------------------------------------

@pytest.mark.workflow
def test_one_server_per_model_and_the_same_files_as_in_process(tmp_path, demo_models, no_torch_hook):
    wf = new_workflow(tmp_path / "server", demo_models)
    try:
        _server_runs_and_the_same_files_as_in_process(wf, tmp_path, demo_models, no_torch_hook)
    finally:
        _stop_servers(wf.path("logs/models").glob("*.log"))


def _server_runs_and_the_same_files_as_in_process(wf, tmp_path, demo_models, no_torch_hook):
    # Servers outlive the run long enough for the second run below to find them warm.
    wf.path("config/serve.yaml").write_text("models: {server_idle_s: 300}\nplan: {candidates: 4}\nselect: {count: 3}\n")
    configs = (*TEST_CONFIG, "config/serve.yaml")
    wf.snakemake("results/mira/plan.json", configfiles=configs)
    keys = [s["key"] for s in json.loads(wf.path("results/mira/plan.json").read_text())["shots"]]
    captions = [f"results/mira/captions/{k}.txt" for k in keys[:2]]
    wf.snakemake(*(f"results/mira/scores/{k}.embedding.json" for k in keys), "results/mira/reference.embedding.json",
                 *captions, configfiles=configs)

    # 4 shots, 5 embeddings (the reference's too), 2 captions: one server, one load, per model.
    for kind, job, n in (("generate", "generate", 4), ("embed", "embed", 5), ("vlm", "caption", 2)):
        logs = _server_logs(wf, kind)
        assert len(logs) == 1 and _loads(logs[0]) == 1 and _served(logs[0], job) == n, logs
    assert "served by the model server" in wf.path(f"logs/mira/generate/{keys[0]}.log").read_text()

    # The jobs themselves are thin: with torch (and what is built on it) unimportable they still run,
    # against the warm servers.
    for k in keys[:2]:
        for p in (f"images/{k}.png", f"images/{k}.json", f"scores/{k}.embedding.json"):
            wf.path(f"results/mira/{p}").unlink()
    again = wf.snakemake(*(f"results/mira/scores/{k}.embedding.json" for k in keys[:2]), configfiles=configs,
                         env={"PYTHONPATH": str(no_torch_hook)})
    assert wf.jobs(again)["generate"] == 2 and wf.jobs(again)["embed"] == 2
    for kind in ("generate", "embed"):
        assert _loads(_server_logs(wf, kind)[0]) == 1

    # The old path (every job loads its model) makes the same files.
    old = new_workflow(tmp_path / "in-process", demo_models)
    old.path("config/old.yaml").write_text("models: {server: false}\nplan: {candidates: 4}\nselect: {count: 3}\n")
    targets = [*(f"results/mira/{d}/{keys[0]}.{e}" for d, e in (("images", "png"), ("images", "json"),
                                                                ("scores", "embedding.json"))), captions[0]]
    old.snakemake(*targets, configfiles=(*TEST_CONFIG, "config/old.yaml"))
    assert not old.path("logs/models").exists()
    for t in targets:
        if "/images/" in t and t.endswith(".json"):  # provenance: when and how long differ
            new, was = (json.loads(w.path(t).read_text()) for w in (wf, old))
            assert {k: v for k, v in new.items() if k not in ("created", "seconds")} == \
                   {k: v for k, v in was.items() if k not in ("created", "seconds")}, t
        else:
            assert wf.path(t).read_bytes() == old.path(t).read_bytes(), t


# ---- the server and its clients ------------------------------------------------------------------

@pytest.fixture
def embed_client(tmp_path, demo_models, monkeypatch):
    """A client of an embedder server private to this test (its own working directory)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", PYTHONPATH)
    started = []

    def make(idle_s=60, model=str(demo_models / "embedder")):
        client = Client("embed", {"model": model, "device": "cpu"},
                        {**model_server.DEFAULTS, "server_idle_s": idle_s, "server_start_s": 120})
        started.append(client)
        return client

    yield make
    _stop_servers(client.log for client in started)


def _embed(client, tmp_path, demo_models, output="e.json"):
    image = REPO / "characters/mira/reference.png"
    out = io.StringIO()
    client.call("embed", {"image": str(image), "output": str(tmp_path / output)}, f"image {image.name}", out)
    return re.search(r"pid (\d+)", out.getvalue())[1]


def test_socket_is_private_and_a_job_error_names_the_image_and_leaves_the_server_serving(embed_client, tmp_path,
                                                                                        demo_models):
    client = embed_client()
    pid = _embed(client, tmp_path, demo_models)
    assert json.loads((tmp_path / "e.json").read_text())["vector"]
    assert stat.S_IMODE(client.socket.stat().st_mode) == 0o600
    assert stat.S_IMODE(client.socket.parent.stat().st_mode) == 0o700
    # The output cannot be written (its folder is a file): the job fails, saying which image and why.
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ModelServerError, match=r"image reference\.png: .*(NotADirectory|FileExists|Errno)"):
        _embed(client, tmp_path, demo_models, output="blocker/e.json")
    assert _embed(client, tmp_path, demo_models, output="f.json") == pid  # the same server goes on
    assert _loads(client.log) == 1


def test_a_killed_server_is_replaced(embed_client, tmp_path, demo_models):
    client = embed_client()
    pid = _embed(client, tmp_path, demo_models)
    os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.2)
    assert client.socket.exists()  # stale: nobody listens there
    assert _embed(client, tmp_path, demo_models) != pid
    assert _loads(client.log) == 2


def test_an_idle_server_exits_and_the_next_job_starts_another(embed_client, tmp_path, demo_models):
    client = embed_client(idle_s=1)
    pid = _embed(client, tmp_path, demo_models)
    for _ in range(100):
        if not client.socket.exists() and "exiting" in client.log.read_text():
            break
        time.sleep(0.1)
    else:
        pytest.fail("the idle server did not exit")
    assert "idle for 1 s after 1 jobs: exiting" in client.log.read_text()
    assert _embed(client, tmp_path, demo_models) != pid


def test_a_model_that_does_not_load_fails_the_job_with_the_servers_log(embed_client, tmp_path, demo_models,
                                                                         monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub to ask here
    client = embed_client(model="models/no-such-embedder")
    with pytest.raises(ModelServerError, match=r"exited while loading(.|\n)*select\.embedder = 'models/no-such-embedder'"):
        _embed(client, tmp_path, demo_models)


def test_a_server_that_dies_during_a_job_fails_that_job_naming_it(embed_client, tmp_path):
    """A stand-in server that takes the job and dies (closes) before answering, as an OOM kill does."""
    client = embed_client()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(client.socket))
    listener.listen(1)

    def take_and_die():
        conn, _ = listener.accept()
        conn.makefile("r").readline()
        conn.sendall(b'{"accepted": true}\n')
        conn.close()

    threading.Thread(target=take_and_die, daemon=True).start()
    with pytest.raises(ModelServerError, match=r"image 7\.png: the model server .* died while working on it"):
        client.call("embed", {"image": "7.png", "output": "7.json"}, "image 7.png", io.StringIO())
    listener.close()


# ---- in a grouped SLURM job -----------------------------------------------------------------------

@pytest.mark.workflow
def test_a_grouped_slurm_job_loads_each_model_once(tmp_path, demo_models):
    """A grouped cluster job runs its jobs one after another (`--jobs 1` on the node, as processes):
    they share one server per model, started inside that SLURM job."""
    from test_slurm import _cluster_up, _submitted

    if not _cluster_up():
        pytest.skip("no SLURM controller answers `scontrol ping`: bring one up with `sudo tests/slurm/up.sh`")
    wf = new_workflow(tmp_path / "slurm", demo_models)
    # the group's jobs run one after another, other rules' jobs between a model's: on a loaded
    # machine those gaps outlast the test config's 30 s idle time, and a restarted server is a second load
    wf.path("config/slurm-test.yaml").write_text("plan: {candidates: 4}\nselect: {count: 3}\nmodels: {server_idle_s: 600}\n")
    wf.path("partitions.yaml").write_text("partitions:\n  cpu: {max_gpu: 0}\n  gpu: {max_gpu: 2}\n")
    try:
        run = wf.snakemake("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2",
                           "results/mira/selection.tsv", configfiles=(*TEST_CONFIG, "config/slurm-test.yaml"),
                           env={"HF_HUB_OFFLINE": "1", "SNAKEMAKE_SLURM_PARTITIONS": str(wf.path("partitions.yaml"))})
        groups = [j for j, log in _submitted(run.output).items() if "group_images" in log]
        assert len(groups) == 1, run.output[-3000:]
        for kind, job, n in (("generate", "generate", 4), ("embed", "embed", 5)):
            logs = _server_logs(wf, kind)
            assert len(logs) == 1 and _loads(logs[0]) == 1 and _served(logs[0], job) == n, logs
            assert f"SLURM job {groups[0]}" in logs[0].read_text()
    finally:
        _stop_servers(wf.path("logs/models").glob("*.log"))
