"""Each local model loaded once per run, not once per image: a small model server per model.

A per-image job (generate with diffusers, embed, caption/ask/observe with a local VLM, evaluate)
used to be a Python process that imported torch and diffusers/transformers and loaded its model
for one image. Now the job is a thin client: it sends its job (paths and settings, JSON) over a
Unix socket to a server that holds the model, and waits for the reply. The first job that needs a
model starts its server (under a file lock, so concurrent jobs start one); later jobs reuse it.

- One server per (kind, model, settings, working directory, SLURM job, visible GPUs): the socket's
  name is a hash of them, under a private (0700) directory in $XDG_RUNTIME_DIR or the temp dir,
  node-local; the socket itself is 0600. Jobs of another SLURM allocation or another project never
  share a server (its GPUs and files would be the wrong ones).
- It serves one job at a time, so one model runs one job at a time; on a CUDA device it also holds
  a node-local lock per device while it works (``models.gpu_exclusive``), so two servers (say the
  generator and the embedder) do not run on one GPU at once.
- It writes each job's outputs itself, atomically, with the same functions the in-process path
  uses (JOBS below): the files and their contents do not depend on where the job ran.
- It exits after ``models.server_idle_s`` seconds without a job: across the serial jobs of a
  grouped SLURM job (``--jobs 1`` on the node) and the parallel jobs of a local run it stays up;
  after the run it goes away by itself.
- A dead server (its socket refuses connections) is replaced; one that dies during a job makes that
  job fail, naming the job's image and the server's log; an error in a job reaches the job as an
  error naming the image and the cause, and the server goes on serving. The server's log is
  ``logs/models/<kind>-<hash>.log`` in the working directory (each load and each job is a line).

Why not threads of the snakemake process (``run:`` rules)? They need ``--force-use-threads``, which
the executor interface does not pass to group jobs, and a grouped SLURM job runs its jobs with
``--jobs 1`` as processes (snakemake issue 4223). A server per model holds in both, and locally.

``models.server: false`` keeps the old path: each job loads its model in its own process.

No torch import at module level: the client side is what every model job imports.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any, Callable

from synthlora.io import content_hash

DEFAULTS = {"server": True, "server_idle_s": 120, "server_start_s": 1800, "gpu_exclusive": True}
LOG_DIR = "logs/models"


class ModelServerError(RuntimeError):
    pass


# ---- what a server can load, and the jobs it runs ---------------------------------------------

def _load_generator(spec: dict):
    from synthlora.backends import make_generator

    return make_generator(spec)


def _load_embedder(spec: dict):
    from synthlora.embed import Embedder

    return Embedder(spec["model"], device=spec["device"], dtype=spec.get("dtype", "auto"), key=spec.get("key", "select.embedder"))


def _load_captioner(spec: dict):
    from synthlora.backends import make_captioner

    return make_captioner(spec)


def _load_eval_pipeline(spec: dict):
    from synthlora.evaluate import eval_pipeline

    return eval_pipeline(spec, spec["device"], spec.get("model_options"))


LOADERS: dict[str, Callable[[dict], Any]] = {
    "generate": _load_generator, "embed": _load_embedder, "vlm": _load_captioner, "evaluate": _load_eval_pipeline,
}


def _generate(generator, job: dict, out: IO[str]) -> Any:
    from synthlora.generation import generate_shot

    generate_shot(job["shot"], job["gen_cfg"], job.get("reference"), job["image"], job["provenance"], out=out,
                  background=tuple(job["background"]), generator=generator)


def _embed(embedder, job: dict, out: IO[str]) -> Any:
    from synthlora.embed import embed_file
    from synthlora.io import write_json

    write_json(job["output"], embed_file(embedder, job["image"]))


def _eval_metrics(embedder, job: dict, out: IO[str]) -> Any:
    from synthlora.evaluate import measure_images

    return measure_images(job["images"], job["image_dir"], job["dataset"], job["reference"], job["settings"],
                          embedder=embedder)


def _caption(captioner, job: dict, out: IO[str]) -> Any:
    from PIL import Image

    from synthlora.captions import format_caption
    from synthlora.io import write_json, write_text

    s = job["settings"]
    with Image.open(job["image"]) as im:
        tags = captioner.tag(im.convert("RGB"), s["vocabulary"], s["instruction"])
    caption = format_caption(s["trigger"], s["always"], tags, s["categories"])
    print(caption, file=out)
    usage = getattr(captioner, "usage", [])  # one record per API call; none for local backends
    for record in usage:
        print(f"API usage: {record}", file=out)
    write_json(job["usage"], usage)
    write_text(job["caption"], caption + "\n")


def _ask(captioner, job: dict, out: IO[str]) -> Any:
    from PIL import Image

    from synthlora.io import write_json
    from synthlora.selection import ask_yes_no

    questions = dict(job["questions"])  # question → must-preserve feature (None: select.vlm_questions)
    answers = {}
    if questions:
        with Image.open(job["image"]) as im:
            answers = ask_yes_no(captioner, im.convert("RGB"), list(questions))
    print(answers, file=out)
    write_json(job["output"], {"answers": answers,
                               "must_preserve": {q: f for q, f in questions.items() if f is not None}})


def _observe(captioner, job: dict, out: IO[str]) -> Any:
    from synthlora.intake import PictureProblem, open_picture
    from synthlora.io import write_json

    s = job["settings"]
    try:
        image, _ = open_picture(job["image"])
    except PictureProblem as exc:  # nothing to look at: selection rejects it for that
        write_json(job["output"], {"tags": {}, "error": str(exc)})
        return
    tags = captioner.tag(image, s["vocabulary"], s["instruction"])
    print(tags, file=out)
    write_json(job["output"], {"tags": tags, "usage": getattr(captioner, "usage", [])})


def _evaluate(pipe, job: dict, out: IO[str]) -> Any:
    from synthlora.evaluate import render_suite

    return render_suite(job["items"], job["settings"], job.get("lora"), job["out_dir"], pipe=pipe, out=out)


JOBS: dict[str, tuple[str, Callable[[Any, dict, IO[str]], Any]]] = {
    # job name → (the kind of model it needs, what it does with it)
    "generate": ("generate", _generate), "embed": ("embed", _embed), "caption": ("vlm", _caption),
    "ask": ("vlm", _ask), "observe": ("vlm", _observe), "evaluate": ("evaluate", _evaluate),
    "eval_metrics": ("embed", _eval_metrics),
}


# ---- the entry point of model jobs ------------------------------------------------------------

def settings_of(config: dict) -> dict:
    return {**DEFAULTS, **(config.get("models") or {})}


def vlm_spec(settings: dict, device: str) -> dict:
    """What loads a caption model (caption, ask and observe share its server); an API backend's
    connection settings too, as it runs in the job's process."""
    keys = ("backend", "model", "dtype") + (("openai",) if settings["backend"] == "openai" else ())
    return {**{k: settings[k] for k in keys if k in settings}, "device": device}


def run_job(name: str, spec: dict, job: dict, config: dict, what: str, out: IO[str] | None = None) -> Any:
    """Run one model job: through the model's server (models.server, the default) or in this process
    (load the model, run the job). ``spec`` names the model and its load settings (what identifies a
    server); ``job`` the inputs and outputs; ``what`` the image or run, for error messages. A job on
    an API backend (no local model) always runs here."""
    out = out or sys.stdout
    kind, fn = JOBS[name]
    settings = settings_of(config)
    if not settings["server"] or spec.get("backend") == "openai":
        return fn(LOADERS[kind](spec), job, out)
    return Client(kind, spec, settings).call(name, job, what, out)


# ---- where a server lives ---------------------------------------------------------------------

def _runtime_dir() -> Path:
    # A socket's path must fit in 107 bytes: a long $TMPDIR (a cluster's per-job scratch) falls back to /tmp.
    base = next(b for b in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp")
                if b and len(b) < 50 and os.access(b, os.W_OK))
    d = Path(base) / f"synthlora-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    if d.stat().st_uid != os.getuid() or d.stat().st_mode & 0o077:
        raise ModelServerError(f"{d} is not a private directory of this user: remove it, or set XDG_RUNTIME_DIR")
    return d


def identity(kind: str, spec: dict) -> str:
    """The server's name: the model and its settings, and everything that makes a server of another
    run unfit for this job (working directory, SLURM job, visible GPUs, this Python)."""
    # the directory's inode too: a project folder deleted and made again under the same path is another
    # "key" (the config key that named the model) only words a load error: it makes no other server
    ident = {"kind": kind, "spec": {k: v for k, v in spec.items() if k != "key"},
             "cwd": os.getcwd(), "cwd_inode": os.stat(".").st_ino, "python": sys.executable,
             "package": str(Path(__file__).resolve().parent),
             "slurm_job": os.environ.get("SLURM_JOB_ID", ""), "gpus": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    return f"{kind}-" + content_hash(ident)


@contextlib.contextmanager
def _flock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _connect(path: Path) -> socket.socket | None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return s
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        return None


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Client:
    """A job's side: find (or start) the server for its model, send the job, wait for the reply."""

    def __init__(self, kind: str, spec: dict, settings: dict):
        self.kind, self.spec, self.settings = kind, spec, settings
        self.name = identity(kind, spec)
        self.socket = _runtime_dir() / f"{self.name}.sock"
        self.lock = _runtime_dir() / f"{self.name}.lock"
        self.log = Path(LOG_DIR) / f"{self.name}.log"

    def call(self, job_name: str, job: dict, what: str, out: IO[str]) -> Any:
        for _ in range(5):
            conn = _connect(self.socket) or self._start()
            with conn:
                _send(conn, {"job": job_name, "args": job, "what": what, "cwd": os.getcwd()})
                reader = conn.makefile("r", encoding="utf-8")
                accepted = reader.readline()
                if not accepted:  # the server was exiting (idle) as we connected: start another
                    continue
                line = reader.readline()
            if not line:
                raise ModelServerError(
                    f"{what}: the model server for {self.spec.get('model')} ({self.kind}) died while working on it; "
                    f"its log ({self.log}) ends:\n{_tail(self.log)}\nRun snakemake again to retry; if it dies "
                    "again, the log says why (out of memory?).")
            reply = json.loads(line)
            if reply.get("output"):
                out.write(reply["output"])
            if not reply["ok"]:
                raise ModelServerError(f"{what}: {reply['error']}\n(model server log: {self.log})\n{reply['traceback']}")
            print(f"(served by the model server {self.name}, pid {reply['pid']}: "
                  f"{reply['seconds']:.2f} s; log {self.log})", file=out)
            return reply["result"]
        raise ModelServerError(f"{what}: the model server at {self.socket} kept closing connections; see {self.log}")

    def _start(self) -> socket.socket:
        """Start the server unless another job just did; return a connection to it."""
        with _flock(self.lock):
            conn = _connect(self.socket)
            if conn:
                return conn
            with contextlib.suppress(FileNotFoundError):
                self.socket.unlink()  # stale: its server is gone
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a", encoding="utf-8") as log:
                cmd = [sys.executable, "-m", "synthlora.model_server", "--kind", self.kind,
                       "--spec", json.dumps(self.spec), "--socket", str(self.socket),
                       "--idle", str(self.settings["server_idle_s"]),
                       "--gpu-exclusive", str(int(bool(self.settings["gpu_exclusive"])))]
                # Its own session: it outlives this job (and is not killed with its process group).
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
            deadline = time.monotonic() + float(self.settings["server_start_s"])
            while True:
                conn = _connect(self.socket)
                if conn:
                    return conn
                if proc.poll() is not None:
                    raise ModelServerError(
                        f"the model server for {self.spec.get('model')} ({self.kind}) exited while loading "
                        f"(status {proc.returncode}); its log ({self.log}) ends:\n{_tail(self.log)}")
                if time.monotonic() > deadline:
                    proc.kill()
                    raise ModelServerError(
                        f"the model server for {self.spec.get('model')} ({self.kind}) did not load within "
                        f"models.server_start_s = {self.settings['server_start_s']} s; its log: {self.log}")
                time.sleep(0.05)


# ---- the server ---------------------------------------------------------------------------------

def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: {message}", flush=True)


def _gpu_lock(model) -> Path | None:
    """The node-local lock of the CUDA device the model runs on (None off CUDA)."""
    device = str(getattr(model, "device", "") or "")
    if not device.startswith("cuda"):
        return None
    index = device.split(":")[1] if ":" in device else "0"
    physical = (os.environ.get("CUDA_VISIBLE_DEVICES") or "").split(",")
    if physical and physical[0] and int(index) < len(physical):
        index = physical[int(index)]
    return _runtime_dir() / f"gpu-{index}.lock"


def serve(kind: str, spec: dict, path: Path, idle_s: float, gpu_exclusive: bool = True) -> None:
    from synthlora.scripting import where

    lock = path.with_suffix(".lock")
    started = time.monotonic()
    _log(where().replace("job: ", "server: ", 1))
    _log(f"loading {kind} model {spec.get('model')!r} with {json.dumps(spec, sort_keys=True)}")
    model = LOADERS[kind](spec)
    _log(f"model loaded in {time.monotonic() - started:.1f} s")
    gpu_lock = _gpu_lock(model) if gpu_exclusive else None
    # Bound under a temporary name, made private, then renamed into place: a client never sees a
    # socket whose server is not yet listening.
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp))
    os.chmod(tmp, 0o600)
    listener.listen(64)
    os.replace(tmp, path)
    inode = path.stat().st_ino
    _log(f"listening on {path}")
    served = 0
    while True:
        ready, _, _ = select.select([listener], [], [], idle_s)
        if not ready:
            with _flock(lock):  # no client starts a server while this one leaves
                if select.select([listener], [], [], 0)[0]:
                    continue  # a job connected just now: serve it
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_ino == inode:
                        path.unlink()
                listener.close()
            import resource

            usage = resource.getrusage(resource.RUSAGE_SELF)
            _log(f"idle for {idle_s:g} s after {served} jobs: exiting ({usage.ru_utime + usage.ru_stime:.1f} CPU-s in all)")
            return
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)  # a client that connects and says nothing must not hold the server
            try:
                request = json.loads(conn.makefile("r", encoding="utf-8").readline() or "null")
            except (OSError, ValueError):
                continue
            conn.settimeout(None)
            if not request:
                continue
            _send(conn, {"accepted": True})
            what = request.get("what", "")
            t0 = time.monotonic()
            buf = io.StringIO()
            reply: dict[str, Any] = {"pid": os.getpid()}
            try:
                _, fn = JOBS[request["job"]]
                os.chdir(request["cwd"])  # the job's relative paths are the job's
                with _flock(gpu_lock) if gpu_lock else contextlib.nullcontext():
                    result = fn(model, request["args"], buf)
                reply.update(ok=True, result=result)
            except Exception as exc:
                reply.update(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            reply.update(output=buf.getvalue(), seconds=time.monotonic() - t0)
            served += 1
            _log(f"job {request['job']} {what}: {'ok' if reply['ok'] else 'FAILED ' + reply['error']} "
                 f"in {reply['seconds']:.2f} s")
            with contextlib.suppress(OSError):  # the job may have been cancelled meanwhile
                _send(conn, reply)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="A synthlora model server (started by model jobs; see the module doc).")
    p.add_argument("--kind", required=True, choices=sorted(LOADERS))
    p.add_argument("--spec", required=True, help="the model and its load settings, JSON")
    p.add_argument("--socket", required=True)
    p.add_argument("--idle", type=float, default=DEFAULTS["server_idle_s"])
    p.add_argument("--gpu-exclusive", type=int, default=1)
    a = p.parse_args(argv)
    try:
        serve(a.kind, json.loads(a.spec), Path(a.socket), a.idle, bool(a.gpu_exclusive))
    except BaseException:
        _log("failed:\n" + traceback.format_exc())
        raise


if __name__ == "__main__":
    main()
