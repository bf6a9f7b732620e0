"""``synthlora``: scaffold a character (``new``), check a setup without running anything
(``check``), print the effective config (``config``), print a character's plan, selection and metrics as tables (``show``),
and list or remove what the current plan and training no longer name (``clean``).

The workflow itself runs with ``snakemake``; this is the small tool around it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import click
import yaml

from synthlora.config import NAME, SCHEMA, config_files

def format_table(header: list[str], rows: list[list], max_width: int = 60) -> str:
    """Plain-text columns; long cells are cut with an ellipsis."""
    def cell(v):
        s = str(v).replace("\n", " ")
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)


@click.group()
@click.version_option(package_name="synthlora")
def main():
    """synthlora: a character LoRA from one reference image, trained on synthetic images only."""


# ---- new -------------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--reference", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Reference image (used only for analysis; never trained on).")
@click.option("--description", required=True,
              help="Supplementary description: a text file, or the text itself.")
@click.option("--trigger", required=True, help="Trigger word written first in every caption (no commas).")
@click.option("--config", "config_file", default="config/characters.yaml", show_default=True,
              help="Config file the character entry is added to (created if missing).")
@click.option("--root", default=".", type=click.Path(file_okay=False), help="Workflow directory.")
@click.option("--force", is_flag=True, help="Replace an existing character of that name.")
def new(name, reference, description, trigger, config_file, root, force):
    """Scaffold character NAME: characters/NAME/{reference, description.md, features.json} and a config entry."""
    root = Path(root)
    if not NAME.match(name):
        raise click.BadParameter("use letters, digits, '_' and '-' only (it becomes a directory name)", param_hint="NAME")
    from synthlora.config import trigger_problem

    if trigger_problem(trigger):
        raise click.BadParameter(trigger_problem(trigger), param_hint="--trigger")
    cfg_path = root / config_file
    cfg = yaml.safe_load(cfg_path.read_text()) if cfg_path.exists() else {}
    cfg = cfg or {}
    if name in (cfg.get("characters") or {}) and not force:
        raise click.ClickException(f"{cfg_path} already has a character {name!r} (use --force to replace it)")
    char_dir = root / "characters" / name
    char_dir.mkdir(parents=True, exist_ok=True)
    ref_dest = char_dir / ("reference" + Path(reference).suffix.lower())
    shutil.copyfile(reference, ref_dest)
    text = Path(description).read_text() if os.path.isfile(description) else description
    (char_dir / "description.md").write_text(text.rstrip() + "\n")
    first = next((l.strip() for l in text.splitlines() if l.strip()), name)
    stub = {"description": first, "object": [
        {"name": "TODO", "description": "one visual element that must be preserved (colour, shape, material)",
         "position": "where it is: head, torso, arms, hips, legs or feet"}]}
    features = char_dir / "features.json"
    if not features.exists() or force:
        features.write_text(json.dumps(stub, indent=2) + "\n")
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    cfg.setdefault("characters", {})[name] = {
        "reference": rel(ref_dest), "description": rel(char_dir / "description.md"), "trigger": trigger,
        "features_manual": rel(features)}
    cfg_path.parent.mkdir(parents=True, exist_ok=True)
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))
    click.echo(f"created {rel(char_dir)}/ (reference, description.md, features.json stub)")
    click.echo(f"added characters.{name} to {config_file}")
    click.echo(f"next: synthlora check --configfile {config_file} && snakemake --cores all --configfile {config_file}")


# ---- check -----------------------------------------------------------------------------------


def _model_status(path: str, root: Path, demo_dir: str) -> tuple[str, str]:
    if not path:
        return "ok", "empty: the default applies (for evaluate.model: train.base_model)"
    if path.rstrip("/").startswith(demo_dir.rstrip("/")):
        return ("ok", "demo model, present") if (root / path).exists() else \
            ("ok", "demo model, built by rule build_demo_models")
    if (root / path).exists() or Path(path).exists():
        return "ok", "local path"
    if re.match(r"^[\w.-]+/[\w.-]+$", path):
        return "warn", "not a local path: a hub id, downloaded on first use (needs network)"
    return "FAIL", "neither a local path nor a hub id"


def run_checks(root: Path, configfiles: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(check, status ok/warn/FAIL, detail) rows. Runs nothing and builds nothing."""
    from synthlora.config import ConfigError, check_characters, load_config

    files = config_files(configfiles)
    rows: list[tuple[str, str, str]] = [("config files read", "ok", " + ".join(files) + (
        " (the demo: no --configfile named)" if not configfiles else ""))]
    try:
        config = load_config(configfiles, root)
    except ConfigError as e:
        return [*rows, ("config against schema", "FAIL", str(e))]
    rows.append(("config against schema", "ok", f"{SCHEMA}, defaults filled"))
    cwd = os.getcwd()
    os.chdir(root)
    try:
        check_characters(config)
        rows.append(("characters, references, feature schemas", "ok", ", ".join(config["characters"])))
    except ConfigError as e:
        rows.append(("characters, references, feature schemas", "FAIL", str(e)))
    finally:
        os.chdir(cwd)

    backends = {stage: config[stage].get("backend") for stage in ("analyze", "generate", "caption", "train")}
    rows.append(("backends", "ok", ", ".join(f"{s}={b}" for s, b in backends.items())))
    needed = {"snakemake", "PIL", "numpy", "matplotlib"}
    if set(backends.values()) & {"transformers", "diffusers", "builtin"}:
        needed |= {"torch", "transformers", "diffusers", "peft", "safetensors"}
    missing = sorted(m for m in needed if importlib.util.find_spec(m) is None)
    rows.append(("python packages", "FAIL" if missing else "ok",
                 f"missing: {', '.join(missing)}" if missing else ", ".join(sorted(needed))))

    demo = config["demo_models_dir"]
    models = {"train.base_model": config["train"]["base_model"], "select.embedder": config["select"]["embedder"],
              "evaluate.embedder": config["evaluate"]["embedder"], "evaluate.model": config["evaluate"]["model"]}
    for stage in ("analyze", "generate", "caption"):
        if backends[stage] == "openai":
            url = config[stage]["openai"]["base_url"] or "api.openai.com"
            rows.append((f"{stage}.model", "ok", f"{config[stage]['model']}: served by {url}"))
        elif backends[stage] not in ("manual", "folder"):
            models[f"{stage}.model"] = config[stage]["model"]
    for key, path in models.items():
        status, detail = _model_status(path, root, demo)
        rows.append((key, status, f"{path}: {detail}" if path else detail))
    from synthlora.single_file import is_single_file, tokenizer_problem

    files = [p for p in models.values() if p and is_single_file(p) and not p.startswith(demo.rstrip("/") + "/")]
    if files:  # a checkpoint file holds no tokenizer: it must be found offline
        problem = tokenizer_problem(config.get("single_file", {}))
        rows.append(("single_file.tokenizer", "FAIL" if problem else "ok", problem or "found offline"))

    ocr = config["score"]["ocr"]
    if not ocr:
        rows.append(("OCR (score.ocr)", "warn", "'' : burnt-in text and watermarks are not detected"))
    elif shutil.which(ocr):
        rows.append(("OCR (score.ocr)", "ok", f"{shutil.which(ocr)}"))
    else:
        rows.append(("OCR (score.ocr)", "FAIL", f"{ocr!r} not found: install it (Debian/Ubuntu: apt-get install "
                     "tesseract-ocr tesseract-ocr-eng; macOS: brew install tesseract), or set score.ocr: '' to skip "
                     "text detection"))

    key_vars = sorted({config[stage].get("openai", {}).get("api_key_env", "OPENAI_API_KEY")
                       for stage, backend in backends.items() if backend == "openai"} - {""})
    for var in key_vars:
        ok = bool(os.environ.get(var))
        rows.append((var, "ok" if ok else "FAIL", "set" if ok else "an openai backend reads this variable, and it is empty"))
    if not key_vars:
        rows.append(("API key", "ok", "not needed (no openai backend)"))

    if backends["train"] == "kohya":
        sd = config["train"].get("kohya", {}).get("sd_scripts", "")
        script = {"sdxl": "sdxl_train_network.py"}.get(config["train"]["family"], "train_network.py")
        ok = bool(sd) and (Path(sd) / script).is_file()
        rows.append(("sd-scripts", "ok" if ok else "FAIL", f"{sd or '(no path)'}: {script} {'found' if ok else 'not found'}"))
    else:
        rows.append(("sd-scripts", "ok", f"not needed (train.backend {backends['train']})"))

    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            rows.append(("GPU", "ok", f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)}"))
        else:
            rows.append(("GPU", "warn", "none: CPU only (fine for the demo models, slow for real ones)"))
    return rows


@main.command()
@click.option("--configfile", "configfiles", multiple=True, help="Extra config file(s), as for snakemake.")
@click.option("--root", default=".", type=click.Path(file_okay=False), help="Workflow directory.")
def check(configfiles, root):
    """Validate config, schemas, backends, models and environment (API key, GPU, sd-scripts); run nothing."""
    rows = run_checks(Path(root), configfiles)
    click.echo(format_table(["check", "status", "detail"], [list(r) for r in rows], max_width=100))
    failed = [r for r in rows if r[1] == "FAIL"]
    if failed:
        # The table cuts long details; a failure is printed whole, so the fix can be read.
        for check_name, _, detail in failed:
            click.echo(f"\nFAIL {check_name}:\n  {detail}")
        raise click.ClickException(f"{len(failed)} check(s) failed")
    click.echo("all checks passed")


@main.command(name="config")
@click.option("--configfile", "configfiles", multiple=True, help="Config file(s), as for snakemake; none: the demo.")
@click.option("--root", default=".", type=click.Path(file_okay=False), help="Workflow directory.")
def effective_config(configfiles, root):
    """Print the config a run would use: the files read, merged, every default filled in."""
    from synthlora.config import ConfigError, load_config

    try:
        config = load_config(configfiles, root)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"# config files read: {' + '.join(config_files(configfiles))}")
    click.echo(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), nl=False)


# ---- show ------------------------------------------------------------------------------------


@main.command()
@click.argument("name")
@click.option("--root", default=".", type=click.Path(file_okay=False), help="Workflow directory.")
@click.option("--limit", default=0, help="Show at most this many plan/selection rows (0: all).")
def show(name, root, limit):
    """Print character NAME's plan, selection and evaluation metrics as tables."""
    from synthlora.evaluate import read_tsv as read_metrics
    from synthlora.selection import read_tsv

    base = Path(root) / "results" / name
    if not base.is_dir():
        raise click.ClickException(f"{base} does not exist: run snakemake for {name!r} first")
    cut = (lambda rows: rows[:limit]) if limit else (lambda rows: rows)  # noqa: E731
    plan = base / "plan.json"
    if plan.is_file():
        shots = json.loads(plan.read_text())["shots"]
        click.echo(f"plan ({len(shots)} shots)")
        click.echo(format_table(["#", "key", "view", "pose", "expression", "framing", "background", "seed"],
                                [[s["index"], s["key"], s["tags"].get("views", ""), s["tags"].get("poses", ""),
                                  s["tags"].get("expressions", ""), s["tags"].get("framings", ""),
                                  s["tags"].get("backgrounds", ""), s["seed"]] for s in cut(shots)]))
    else:
        click.echo("plan: not built yet")
    sel = base / "selection.tsv"
    if sel.is_file():
        rows = read_tsv(sel)
        click.echo(f"\nselection ({sum(r['selected'] for r in rows)} of {len(rows)} selected)")
        click.echo(format_table(["key", "selected", "reason"],
                                [[r["key"], "yes" if r["selected"] else "no", r["reason"]] for r in cut(rows)], 80))
    else:
        click.echo("\nselection: not built yet")
    # eval/<fingerprint>/metrics.tsv, one per training: the newest is the current training's
    tables = sorted(base.glob("eval/*/metrics.tsv"), key=lambda p: p.stat().st_mtime)
    metrics = tables[-1] if tables else base / "eval" / "metrics.tsv"
    if metrics.is_file():
        rows = read_metrics(metrics)
        cols = ["run", "step", "identity_dataset", "identity_reference", "prompt_adherence", "failure_rate", "combined", "best"]
        click.echo(f"\nevaluation of training {metrics.parent.name} (run 'base' = without the LoRA)")
        click.echo(format_table(cols, [[r[c] for c in cols] for r in rows]))
        best = next((r for r in rows if r["best"] == "yes"), None)
        if best:
            click.echo(f"delivered: results/{name}/lora/{name}.safetensors = epoch {int(best['epoch'])}")
    else:
        click.echo("\nevaluation: not built yet")


# ---- clean -----------------------------------------------------------------------------------


@main.command()
@click.option("--configfile", "configfiles", multiple=True, help="Config file(s), as for snakemake; none: the demo.")
@click.option("--root", default=".", type=click.Path(file_okay=False), help="Workflow directory.")
@click.option("--yes", is_flag=True, help="Delete what is listed (without it, nothing is deleted).")
def clean(configfiles, root, yes):
    """List what the current plan and training no longer name (images, scores and captions of keys no
    longer planned, other trainings' folders and evaluations, damaged files set aside); --yes deletes it.

    Old trainings are kept until then: going back to their settings reuses them without training."""
    from synthlora.config import ConfigError, load_config
    from synthlora.layout import remove, stale_files

    try:
        config = load_config(configfiles, root)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None
    rows = stale_files(config, root)
    if not rows:
        click.echo("nothing to clean: every file is named by the current plan and training")
        return
    click.echo(format_table(["path", "MiB", "why"], [[str(Path(p).relative_to(root)), f"{n / 2**20:.1f}", why]
                                                      for p, n, why in rows], max_width=100))
    total = sum(n for _, n, _ in rows) / 2**20
    if not yes:
        click.echo(f"{len(rows)} paths, {total:.1f} MiB; nothing deleted (dry run): add --yes to delete them")
        return
    remove([p for p, _, _ in rows])
    click.echo(f"deleted {len(rows)} paths, {total:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
