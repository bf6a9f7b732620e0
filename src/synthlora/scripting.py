"""Glue for the thin ``script:`` entry points: logging into the job's log file and thread limits."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
from typing import IO, Iterator


def where() -> str:
    """The first line of every job log: the host, the SLURM job and partition when there is one, and
    the GPUs the job was given, so a cluster user can tell where a job ran and on what."""
    parts = [f"host {socket.gethostname()}"]
    if os.environ.get("SLURM_JOB_ID"):
        parts.append(f"SLURM job {os.environ['SLURM_JOB_ID']}"
                     + (f" (partition {os.environ['SLURM_JOB_PARTITION']})" if os.environ.get("SLURM_JOB_PARTITION") else ""))
    parts.append(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
    return "job: " + ", ".join(parts)


@contextlib.contextmanager
def job(snakemake) -> Iterator[None]:
    """Send the job's stdout/stderr (progress bars included) to its log; cap threads to the job's.

    Threads are capped before any heavy import: two jobs on two cores with default threading
    ran 5–30× slower (FIELD-NOTES)."""
    threads = str(max(1, int(getattr(snakemake, "threads", 1) or 1)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    log_path = snakemake.log[0] if len(snakemake.log) else None
    if log_path is None:
        yield
        return
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as log:
        print(where(), file=log)
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        except BaseException:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stdout, sys.stderr = old_out, old_err


@contextlib.contextmanager
def thread_job(log_path: str) -> Iterator[IO[str]]:
    """The job log of a job that runs as a thread of the snakemake process (a `run:` rule): the
    where() line, then what the job prints to the yielded file. sys.stdout is left alone (other
    jobs' threads share it); a failure's traceback is written to the log and raised."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as log:
        print(where() + " (a thread of the snakemake process)", file=log)
        try:
            yield log
        except BaseException:
            traceback.print_exc(file=log)
            raise
