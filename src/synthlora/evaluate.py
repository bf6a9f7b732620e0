"""Evaluate a trained LoRA the way the seeds judged theirs by eye, but with numbers.

For each saved checkpoint (and once without the LoRA, the baseline ``base``) the test-prompt
suites of seed 001 (consistency: views and expressions; flexibility: styles; context: scenes and
outfits) are rendered with fixed seeds. Each output is then measured:

- ``identity_dataset``: mean cosine similarity of the output's image embedding to every dataset
  image's embedding (does it look like the character it was trained on?);
- ``identity_reference``: cosine similarity to the reference image's embedding;
- ``prompt_adherence``: cosine similarity of the output to its prompt's text embedding, the
  trigger word removed (does the LoRA still follow "oil painting style", "in a coffee shop"?);
- ``failure_rate``: fraction of outputs a failure detector flags (``DETECTORS``): undecodable or
  blank, burnt-in text, extra figures (the selection stage's detectors and thresholds), and a
  stuck background (a scene prompt answered with the dataset's plain backdrop);
- ``sharpness``: mean variance of the Laplacian (as in scoring).

``combined`` = Σ weight × metric over ``evaluate.weights`` (failure_rate weighs negatively by
default). The delivered epoch is the one with the highest ``evaluate.best_by`` metric (default
``combined``; ``failure_rate`` is minimised); a tie goes to the earlier epoch (fewer steps, less
overfit). The baseline is measured and reported but never delivered.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from synthlora.io import content_hash
from synthlora.selection import figures_problem, text_problem

BASE = "base"
METRICS = ("identity_dataset", "identity_reference", "prompt_adherence", "failure_rate", "sharpness")
LOWER_IS_BETTER = {"failure_rate"}


# ---- suites ----------------------------------------------------------------------------------


def suite_items(eval_cfg: dict, trigger: str) -> list[dict[str, Any]]:
    """Every test image of a run: suite, prompt (trigger filled in), seed, and a stable file name."""
    items = []
    for suite in sorted(eval_cfg["suites"]):
        for i, template in enumerate(eval_cfg["suites"][suite]):
            prompt = template.replace("{trigger}", trigger)
            for seed in eval_cfg["seeds"]:
                items.append({"suite": suite, "index": i, "prompt": prompt, "seed": int(seed),
                              "name": f"{suite}-{i:02d}-s{int(seed)}"})
    return items


def render_settings(eval_cfg: dict, base_model: str) -> dict[str, Any]:
    """What, besides the prompt, seed and LoRA, determines a test image's pixels."""
    return {
        "model": eval_cfg["model"] or base_model,
        "negative_prompt": eval_cfg["negative_prompt"],
        "width": int(eval_cfg["width"]),
        "height": int(eval_cfg["height"]),
        "steps": int(eval_cfg["steps"]),
        "guidance_scale": float(eval_cfg["guidance_scale"]),
        "lora_weight": float(eval_cfg["lora_weight"]),
        "dtype": eval_cfg["dtype"],
    }


def suite_id(items: list[dict], settings: dict) -> str:
    return content_hash({"items": items, "settings": settings})


def eval_pipeline(settings: dict, device: str = "auto", model_options: dict | None = None):
    """The text-to-image pipeline the test suites are rendered with (evaluate.model, else the base).
    ``model_options``: how the model loads (synthlora.single_file.model_options)."""
    import torch  # noqa: F401  (diffusers needs it; imported here so the error names torch)

    from synthlora.backends.base import load_sd_pipeline, resolve_device, resolve_dtype

    device = resolve_device(device)
    dtype = resolve_dtype(settings["dtype"], device)
    pipe = load_sd_pipeline(settings["model"], "evaluate.model (empty: train.base_model)", dtype=dtype,
                            **(model_options or {})).to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render_suite(items: list[dict], settings: dict, lora: str | None, out_dir: str | Path,
                 device: str = "auto", pipe=None, out=None, model_options: dict | None = None) -> list[dict[str, Any]]:
    """Render every item (with the LoRA at ``lora_weight``, or without when ``lora`` is None) into
    ``out_dir/{name}.png``; return the item list with the file name of each image. ``pipe``: one
    already loaded by eval_pipeline() (a model server's, reused across runs: the LoRA is unloaded
    after), else one is loaded here."""
    import torch

    pipe = pipe or eval_pipeline(settings, device, model_options)
    if lora:
        pipe.load_lora_weights(str(lora), adapter_name="checkpoint")
        pipe.set_adapters(["checkpoint"], adapter_weights=[settings["lora_weight"]])
    try:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rendered = []
        for item in items:
            image = pipe(prompt=item["prompt"], negative_prompt=settings["negative_prompt"] or None,
                         num_inference_steps=settings["steps"], guidance_scale=settings["guidance_scale"],
                         width=settings["width"], height=settings["height"],
                         generator=torch.Generator("cpu").manual_seed(item["seed"])).images[0]
            image.save(out_dir / f"{item['name']}.png", format="PNG")
            rendered.append({**item, "file": f"{item['name']}.png"})
            print(f"{item['name']}: {item['prompt']}", file=out)
    finally:
        if lora:  # the pipeline is left as it came: the next run renders without this LoRA
            pipe.unload_lora_weights()
    return rendered


# ---- failure detectors -----------------------------------------------------------------------

# A detector takes (image path, score_image() result, the rendered item: suite, prompt, seed, the
# detector settings: DETECTOR_DEFAULTS overridden from config) and returns a reason string or None.
# The defaults are the selection stage's detectors, with the same thresholds (select.*), plus the
# one failure only a trained LoRA shows: a stuck background.
Detector = Callable[[Path, dict, dict, dict], "str | None"]

DETECTOR_DEFAULTS = {"min_std_luma": 2.0, "max_text_chars": 4, "max_figures": 1, "plain_border_fraction": 0.8,
                     "background_suites": ["context"], "stuck_background_distance": 40.0,
                     "dataset_background": None}


def _undecodable(path: Path, score: dict, item: dict, s: dict) -> str | None:
    return None if score.get("decodes") else f"undecodable ({score.get('error', '')})"


def _blank(path: Path, score: dict, item: dict, s: dict) -> str | None:
    if score["std_luma"] < s["min_std_luma"]:
        return f"blank image (luma std {score['std_luma']:.2f} < {s['min_std_luma']})"
    return None


def _burnt_in_text(path: Path, score: dict, item: dict, s: dict) -> str | None:
    return text_problem(score, s["max_text_chars"])


def _plain_background(score: dict, s: dict) -> bool:
    return score.get("border_plain") is not None and score["border_plain"] >= s["plain_border_fraction"]


def _extra_figures(path: Path, score: dict, item: dict, s: dict) -> str | None:
    # The blob counter separates figures from a plain backdrop only; in a scene it counts furniture.
    return figures_problem(score, s["max_figures"]) if _plain_background(score, s) else None


def _stuck_background(path: Path, score: dict, item: dict, s: dict) -> str | None:
    """seed 003's "backgrounds stick": asked for a scene, the LoRA paints the dataset's backdrop."""
    bg = s["dataset_background"]
    if bg is None or item.get("suite") not in s["background_suites"] or not _plain_background(score, s):
        return None
    d = float(np.linalg.norm(np.asarray(score["border_rgb"]) - np.asarray(bg)))
    if d <= s["stuck_background_distance"]:
        return (f"stuck background: the prompt asks for a scene but the output has the dataset's plain backdrop "
                f"(border colour {[round(v) for v in score['border_rgb']]}, {d:.0f} from the dataset's "
                f"{[round(v) for v in bg]})")
    return None


DETECTORS: list[Detector] = [_undecodable, _blank, _burnt_in_text, _extra_figures, _stuck_background]


def dataset_background(paths: Iterable[str | Path]) -> list[float] | None:
    """The dataset's backdrop: the median border colour of its images (None without images)."""
    from PIL import Image

    from synthlora.score import border_pixels

    colours = []
    for p in paths:
        with Image.open(p) as im:
            colours.append(border_pixels(np.asarray(im.convert("RGB"), dtype=np.float64)).mean(0))
    return [round(float(v), 2) for v in np.median(colours, axis=0)] if colours else None


def detect_failures(path: str | Path, detectors: Iterable[Detector] | None = None, item: dict | None = None,
                    settings: dict | None = None, ocr: str = "tesseract",
                    ocr_min_confidence: float = 60.0) -> tuple[dict, list[str]]:
    """Score one output with the selection stage's measures and run every failure detector.

    Returns (score, reasons); an empty list means the output passed. An undecodable output is
    reported as that alone (no other measure exists for it)."""
    from synthlora.score import score_image

    path = Path(path)
    s = {**DETECTOR_DEFAULTS, **(settings or {})}
    score = score_image(path, ocr=ocr, ocr_min_confidence=ocr_min_confidence)
    if not score.get("decodes"):
        return score, [_undecodable(path, score, item or {}, s)]
    reasons = [r for det in (DETECTORS if detectors is None else detectors)
               if (r := det(path, score, item or {}, s))]
    return score, reasons


# ---- metrics ---------------------------------------------------------------------------------


def identity_to_set(outputs: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Per output: mean cosine similarity to every reference embedding (rows unit-normalised)."""
    from synthlora.embed import normalize

    outputs, references = normalize(outputs), normalize(references)
    if not len(outputs) or not len(references):
        return np.full(len(outputs), np.nan)
    return (outputs @ references.T).mean(axis=1)


def prompt_adherence(images: np.ndarray, texts: np.ndarray) -> np.ndarray:
    """Per output: cosine similarity of image i to text i (a CLIP score without the ×100)."""
    from synthlora.embed import normalize

    return np.einsum("ij,ij->i", normalize(images), normalize(texts))


def adherence_text(prompt: str, trigger: str) -> str:
    """The prompt as the text model should read it: the trigger word means nothing to it."""
    parts = [p.strip() for p in prompt.split(",")]
    triggers = {t.strip() for t in trigger.split(",")}  # a multi-concept LoRA's: every member's
    kept = [p for p in parts if p and p not in triggers]
    return ", ".join(kept) or prompt


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else float("nan")


def aggregate(per_image: list[dict]) -> dict[str, float]:
    """Run-level metrics: the mean of each per-image metric; failure_rate = flagged fraction."""
    out = {m: _mean(r[m] for r in per_image) for m in METRICS if m != "failure_rate"}
    out["failure_rate"] = float(np.mean([bool(r["failures"]) for r in per_image])) if per_image else float("nan")
    return out


def combined_score(metrics: dict[str, float], weights: dict[str, float]) -> float:
    """Σ weight × metric. An unknown metric name is an error, not a silent zero."""
    unknown = sorted(set(weights) - set(metrics))
    if unknown:
        raise KeyError(f"evaluate.weights names unknown metric(s) {unknown}; known: {sorted(metrics)}")
    return float(sum(w * metrics[m] for m, w in weights.items() if w))


def measure_run(per_image: list[dict], weights: dict[str, float]) -> dict[str, Any]:
    """Overall and per-suite metrics of one run, each with its combined score."""
    overall = aggregate(per_image)
    overall["combined"] = combined_score(overall, weights)
    suites = {}
    for suite in sorted({r["suite"] for r in per_image}):
        m = aggregate([r for r in per_image if r["suite"] == suite])
        m["combined"] = combined_score(m, weights)
        suites[suite] = m
    return {"metrics": overall, "suites": suites}


def pick_best(runs: dict[str, dict[str, float]], best_by: str = "combined") -> str:
    """The epoch (run name, e.g. '000002') with the best ``best_by`` metric; never the baseline.

    Higher is better except for failure_rate; NaN never wins; a tie goes to the earlier epoch."""
    candidates = sorted(r for r in runs if r != BASE)
    if not candidates:
        raise ValueError("no checkpoint to choose from")
    sign = -1.0 if best_by in LOWER_IS_BETTER else 1.0

    def key(run):
        v = runs[run].get(best_by)
        if v is None:
            raise KeyError(f"evaluate.best_by {best_by!r} is not a metric; known: {sorted(runs[run])}")
        v = float(v)
        return -math.inf if math.isnan(v) else sign * v

    best = candidates[0]
    for run in candidates[1:]:
        if key(run) > key(best):
            best = run
    return best


def run_name(epoch: int) -> str:
    return f"{int(epoch):06d}"


SUMMARY_COLUMNS = ("run", "epoch", "step", *METRICS, "combined", "delta_identity_dataset", "best")


def summary_rows(runs: dict[str, dict], steps: dict[str, int], best: str) -> list[dict[str, Any]]:
    """One row per run (baseline first), with identity gain over the baseline."""
    base_id = runs.get(BASE, {}).get("identity_dataset", float("nan"))
    rows = []
    for run in sorted(runs, key=lambda r: (r != BASE, r)):
        m = runs[run]
        rows.append({"run": run, "epoch": "" if run == BASE else int(run), "step": steps.get(run, ""),
                     **{k: m[k] for k in (*METRICS, "combined")},
                     "delta_identity_dataset": m["identity_dataset"] - base_id,
                     "best": "yes" if run == best else ""})
    return rows


def rows_to_tsv(rows: list[dict], columns=SUMMARY_COLUMNS) -> str:
    def fmt(v):
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["\t".join(columns)]
    lines += ["\t".join(fmt(r.get(c, "")) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def read_tsv(path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


# ---- the two jobs' logic -----------------------------------------------------------------------


def measure_images(images: list[dict], image_dir: str | Path, dataset: list[str], reference: str,
                   settings: dict, device: str = "auto", embedder=None) -> list[dict[str, Any]]:
    """Per test image: identity to dataset and reference, prompt adherence, sharpness, failures.
    ``embedder``: one already loaded for settings' embedder (a model server's), else one is loaded here."""
    from synthlora.embed import Embedder

    detector_settings = {**{k: settings[k] for k in DETECTOR_DEFAULTS if k in settings},
                         "dataset_background": dataset_background(dataset)}
    checked = [detect_failures(Path(image_dir) / im["file"], item=im, settings=detector_settings,
                               ocr=settings.get("ocr", "tesseract"),
                               ocr_min_confidence=settings.get("ocr_min_confidence", 60.0)) for im in images]
    emb = embedder or Embedder(settings["embedder"], device=device, dtype=settings["dtype"], key="evaluate.embedder")
    ok = [i for i, (score, _) in enumerate(checked) if score.get("decodes")]
    out_emb = emb.images([Path(image_dir) / images[i]["file"] for i in ok])
    ds_emb = emb.images(list(dataset))
    ref_emb = emb.images([reference])
    text_emb = emb.texts([adherence_text(images[i]["prompt"], settings["trigger"]) for i in ok])
    id_ds = identity_to_set(out_emb, ds_emb)
    id_ref = identity_to_set(out_emb, ref_emb)
    adherence = prompt_adherence(out_emb, text_emb)
    per = {i: (float(id_ds[j]), float(id_ref[j]), float(adherence[j])) for j, i in enumerate(ok)}
    rows = []
    for i, im in enumerate(images):
        score, reasons = checked[i]
        a, b, c = per.get(i, (float("nan"),) * 3)
        rows.append({"name": im["name"], "file": im["file"], "suite": im["suite"], "prompt": im["prompt"],
                     "seed": im["seed"], "identity_dataset": a, "identity_reference": b, "prompt_adherence": c,
                     "sharpness": score.get("sharpness", float("nan")), "failures": reasons})
    return rows


def summarize(run_metrics: list[dict], train_summary: dict, weights: dict[str, float],
              best_by: str) -> tuple[str, dict[str, Any]]:
    """metrics.json of every run → (metrics.tsv text, best.json content)."""
    measured = {m["run"]: measure_run(m["images"], weights) for m in run_metrics}
    overall = {run: r["metrics"] for run, r in measured.items()}
    best = pick_best(overall, best_by)
    steps = {run_name(c["epoch"]): c["step"] for c in train_summary.get("checkpoints", [])}
    table = rows_to_tsv(summary_rows(overall, steps, best))
    return table, {
        "epoch": int(best), "run": best, "best_by": best_by, "value": overall[best][best_by],
        "weights": weights, "rule": ("highest" if best_by not in LOWER_IS_BETTER else "lowest")
        + f" {best_by} among saved epochs; ties go to the earlier epoch; the baseline is never delivered",
        "runs": measured,
    }


def delivered_path(best_json: str | Path, loras: list[str]) -> str:
    """The saved-epoch LoRA that best.json names (its file name ends in -{epoch:06d}.safetensors)."""
    from synthlora.io import read_json

    epoch = int(read_json(best_json)["epoch"])
    for p in loras:
        if Path(p).name.endswith(f"-{epoch:06d}.safetensors"):
            return str(p)
    raise FileNotFoundError(f"{best_json} names epoch {epoch}, which is not among {list(loras)}")
