"""The workflow on a real one-node SLURM cluster through `snakemake --profile profiles/slurm`.

tests/slurm/up.sh brings the cluster up (.ci/run does, as root); without one these tests skip.
One scenario, run once: the first run's base model is missing, so training fails on the cluster;
the model is put in place; the second run resumes; a third finds nothing to do.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import TEST_CONFIG, new_workflow

pytestmark = pytest.mark.workflow

JOBCOMP = Path(os.environ.get("SYNTHLORA_SLURM_STATE", "/var/lib/synthlora-slurm")) / "jobcomp.log"  # up.sh's
# Rules the Snakefile keeps on the submitting machine (`localrules`, and analyze with 'manual').
LOCAL_RULES = {"analyze", "build_demo_models", "reference", "plan", "generation_report", "api_usage", "select", "dataset", "kohya_config",
               "dataset_manifest", "deliver_lora", "eval_summary", "eval_sheet", "report_pictures", "model_card"}


def _cluster_up() -> bool:
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "is UP" in out


def _records(workdir: Path) -> dict[int, dict]:
    """SLURM's own record (jobcomp) of every job that ran in this project directory."""
    out = {}
    for line in JOBCOMP.read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("WorkDir") == str(workdir):
            out[int(fields["JobId"])] = fields
    return out


def _own_lines(output: str) -> str:
    """The run's own output, without the failed jobs' logs it echoes (show-failed-logs): those hold
    the job-side snakemake's lines, where every rule is local."""
    return re.sub(r"Logfile [^\n]*:\n={20,}\n.*?\n={20,}\n", "", output, flags=re.S)


def _submitted(output: str) -> dict[int, str]:
    """SLURM job id → the log path snakemake named when it submitted the job."""
    return {int(m[0]): m[1] for m in re.findall(r"submitted with SLURM jobid (\d+) \(log: ([^)]+)\)", output)}


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory, demo_models):
    if not _cluster_up():
        pytest.skip("no SLURM controller answers `scontrol ping`: bring one up with `sudo tests/slurm/up.sh`")
    wf = new_workflow(tmp_path_factory.mktemp("slurm"), demo_models)
    # Four candidates, one epoch; the base model is named by a folder that does not exist yet.
    wf.path("config/slurm-test.yaml").write_text(
        "plan: {candidates: 4}\nselect: {count: 3}\n"
        "train: {max_train_epochs: 1, base_model: models/base-sdxl}\n")
    # GPU jobs go to the gpu partition by the plugin's partition file (as the README tells sites).
    wf.path("partitions.yaml").write_text(
        "partitions:\n  cpu: {max_gpu: 0}\n  gpu: {max_gpu: 2}\n")
    env = {"HF_HUB_OFFLINE": "1", "SNAKEMAKE_SLURM_PARTITIONS": str(wf.path("partitions.yaml"))}

    def run(check):
        return wf.snakemake("--profile", "profiles/slurm", "--slurm-init-seconds-before-status-checks", "2",
                            configfiles=(*TEST_CONFIG, "config/slurm-test.yaml"), env=env, check=check)

    failed = run(check=False)
    before_fix = {p.name: p.stat().st_mtime_ns for p in wf.path("results/mira/images").glob("*.png")}
    shutil.copytree(wf.path("resources/demo-models/sdxl"), wf.path("models/base-sdxl"))
    resumed = run(check=True)
    again = run(check=True)
    return wf, failed, before_fix, resumed, again


def test_failed_cluster_job_names_its_slurm_log_and_stops_cleanly(cluster_runs):
    wf, failed, *_ = cluster_runs
    assert failed.returncode != 0
    logs = [Path(p) for p in re.findall(r"(\S*\.snakemake/slurm_logs/rule_train/\S+\.log)", failed.output)]
    assert logs, failed.output[-4000:]
    # The SLURM log exists and says what to fix: which key named the missing model.
    assert "train.base_model = 'models/base-sdxl'" in logs[0].read_text()
    # Stopped cleanly: no job of this project left queued or running, no lock left behind.
    assert not any(r["JobState"] in ("PENDING", "RUNNING") for r in _records(wf.root).values())
    queue = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    assert str(wf.root) not in queue
    assert not list(wf.path(".snakemake/locks").glob("*"))
    # What did not depend on training was finished on the cluster.
    assert len(list(wf.path("results/mira/images").glob("*.png"))) == 4
    assert len(list(wf.root.glob("results/mira/train/*/train.toml"))) == 1


def test_rerun_after_the_fix_resumes_without_redoing_finished_jobs(cluster_runs):
    wf, failed, before_fix, resumed, again = cluster_runs
    ran = wf.jobs(resumed)
    assert ran["train"] == 1 and ran["deliver_lora"] == 1
    assert not {"generate", "score", "embed", "caption", "select", "dataset", "kohya_config"} & set(ran)
    after = {p.name: p.stat().st_mtime_ns for p in wf.path("results/mira/images").glob("*.png")}
    assert after == before_fix
    assert wf.path("results/mira/lora/mira.safetensors").exists()
    assert wf.path("results/mira/MODEL_CARD.md").exists()


def test_every_cluster_job_ran_as_a_slurm_job_and_completed(cluster_runs):
    wf, failed, _, resumed, _ = cluster_runs
    records = _records(wf.root)
    for proc in (failed, resumed):
        # Non-local rules are printed as "rule x:", local ones as "localrule x:".
        own = _own_lines(proc.output)
        cluster_rules = set(re.findall(r"^\s*rule (\w+):", own, re.M))
        local_rules = set(re.findall(r"^\s*local(?:rule|checkpoint) (\w+):", own, re.M)) - {"all"}
        assert local_rules <= LOCAL_RULES and not cluster_rules & LOCAL_RULES
        submitted = _submitted(proc.output)
        assert submitted and set(submitted) <= set(records)
    assert {"generate", "score", "caption", "train", "evaluate"} <= set(
        re.findall(r"^\s*rule (\w+):", _own_lines(failed.output + resumed.output), re.M))
    # SLURM's records: the resumed run's jobs all completed; the first run failed only in training.
    assert all(records[j]["JobState"] == "COMPLETED" for j in _submitted(resumed.output))
    failed_jobs = {j for j in _submitted(failed.output) if records[j]["JobState"] != "COMPLETED"}
    assert failed_jobs and all("rule_train" in _submitted(failed.output)[j] or "evaluate" in _submitted(failed.output)[j]
                               for j in failed_jobs)
    # Each cluster job's log says where it ran; the per-image jobs were grouped, not one job each.
    for log in wf.path("logs/mira/generate").glob("*.log"):
        assert "SLURM job" in log.read_text().splitlines()[0]
    assert len([p for p in _submitted(failed.output).values() if "group_images" in p]) == 1
    assert "SLURM job" not in wf.path("logs/mira/select.log").read_text()


def test_training_job_asked_for_a_gpu_and_got_one(cluster_runs):
    wf, _, _, resumed, _ = cluster_runs
    header = next(wf.root.glob("logs/mira/train/*.log")).read_text().splitlines()[0]
    assert re.search(r"SLURM job \d+ \(partition gpu\), CUDA_VISIBLE_DEVICES=\d", header), header
    train_job = next(j for j, log in _submitted(resumed.output).items() if "rule_train" in log)
    assert _records(wf.root)[train_job]["Partition"] == "gpu"


def test_rerun_has_nothing_to_do(cluster_runs):
    *_, again = cluster_runs
    assert "Nothing to be done" in again.output
    assert not _submitted(again.output)
