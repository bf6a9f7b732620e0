"""``MODEL_CARD.md`` in the style of seed 000's public card (and its HTML twin for the report), and
the per-image provenance table.

Everything on the card is read from the run's own files (train.toml, dataset.toml, the training
summary, tag frequencies, the evaluation table, the provenance sidecars), so it describes what was
actually done, not what a config hoped for. No torch here: the rule is light.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from synthlora.io import file_sha256, read_json
from synthlora.verify import verified_lora

PROVENANCE_COLUMNS = ("key", "source", "backend", "model", "seed", "created", "sha256", "same_as_reference",
                      "reference_input", "content_credentials", "prompt")

RESPONSIBILITY = (
    "This LoRA was made to reproduce an original character without training on artist-made images. "
    "It does not grant permission to use anyone's copyright, trademarks, character rights or other "
    "intellectual property, and it implies no license to or waiver of those rights. Users must make "
    "sure that images they generate do not infringe the rights, reputation or legitimate interests "
    "of the character's creator, rights holders or third parties, and must follow applicable law, "
    "platform policies and terms of service. Responsibility for generated outputs rests with the user."
)


def provenance_rows(provenance_files: list[str], reference: str) -> list[dict[str, Any]]:
    ref_sha = file_sha256(reference)
    rows = []
    for p in provenance_files:
        prov = read_json(p)
        shot = prov.get("shot", {})
        image = Path(p).with_suffix(".png")
        sha = file_sha256(image) if image.exists() else ""
        rows.append({"key": shot.get("key", Path(p).stem), "source": prov.get("source", "unknown"),
                     "backend": shot.get("backend", ""), "model": shot.get("model", ""), "seed": shot.get("seed", ""),
                     "created": prov.get("created", ""), "sha256": sha,
                     "same_as_reference": "yes" if sha == ref_sha else "no",
                     # generate.openai.reference_mode: the reference image was sent with the prompt
                     "reference_input": "yes" if prov.get("reference_input") else "no",
                     "content_credentials": credentials_cell(prov.get("content_credentials")),
                     "prompt": shot.get("prompt", "")})
    return rows


def credentials_cell(cred: dict | None) -> str:
    """One image's C2PA Content Credentials for provenance.tsv: validity, issuer, claim generator."""
    if not cred:
        return ""  # not read (a local generator, or an image made before credentials were read)
    if not cred.get("present"):
        return "none" if cred.get("present") is False else f"not read: {cred.get('error', '')}"
    state = "valid" if cred.get("valid") else "INVALID"
    return f"{state}; issuer {cred.get('issuer') or '?'}; generator {cred.get('claim_generator') or '?'}"


def credentials_lines(provenance_files: list[str]) -> list[str]:
    """The model card's line on the training images' Content Credentials (C2PA), when any were read."""
    from synthlora.credentials import credentials_summary

    records = [read_json(p).get("content_credentials") for p in provenance_files]
    if not any(records):
        return []
    s = credentials_summary(records)
    if not s["with_credentials"]:
        return [f"Content Credentials (C2PA): none of the {s['images']} training images carries any."]
    return [f"Content Credentials (C2PA): {s['with_credentials']} of {s['images']} training images carry them, "
            f"{s['valid']} validate (signature and content intact"
            + (f", {s['trusted']} from a trusted signer" if s["trusted"] else "") + "); issuer(s): "
            f"{', '.join(s['issuers']) or 'unknown'}; claim generator(s): {', '.join(s['claim_generators']) or 'unknown'}"
            + (f"; problems reported: {', '.join(s['failures'])}" if s["failures"] else "")
            + " (`content_credentials` in provenance.tsv)."]


def provenance_table(provenance_files: list[str], reference: str) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=PROVENANCE_COLUMNS, delimiter="\t", lineterminator="\n")
    w.writeheader()
    w.writerows(provenance_rows(provenance_files, reference))
    return buf.getvalue()


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """A .safetensors file's ``__metadata__`` (its header is 8 bytes of length, then JSON): no torch."""
    import struct

    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)).get("__metadata__", {}) or {}


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


# ---- one card, two renderings ------------------------------------------------------------------
# The card is a list of blocks, each a tuple whose first item names its kind:
#   ("title" | "heading" | "paragraph" | "note", text)   text may hold `code` and **bold**
#   ("table", header, rows)      ("list", items)
#   ("bars", [(label, count), ...], chart_png)   a bar chart: Mermaid in Markdown, the PNG in HTML
#   ("figure", png, path_from_card, caption)
# card_markdown and card_html render the same blocks, so the two files never say different things.


def card_markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, *a in blocks:
        if kind == "title":
            out.append(f"# {a[0]}")
        elif kind == "heading":
            out.append(f"## {a[0]}")
        elif kind == "paragraph":
            out.append(a[0])
        elif kind == "note":
            out.append(f"> {a[0]}")
        elif kind == "table":
            out.append(md_table(a[0], a[1]))
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in a[0]))
        elif kind == "bars":
            out.append("\n".join(["```mermaid", "gantt", "    title Tag Frequencies", "    dateFormat X",
                                  "    axisFormat %s", "", "    section Count",
                                  *[f"    {label.replace(':', ' ')} : 0, {n}" for label, n in a[0]], "```"]))
        elif kind == "figure":
            out.append(f"![{a[2]}]({a[1]})")
        else:
            raise ValueError(f"unknown card block {kind!r}")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    """Escaped text with the card's two inline marks, `code` and **bold**, as tags."""
    import html
    import re

    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def _figure_html(png: str, caption: str) -> str:
    import html

    from synthlora.report_pages import data_uri

    return (f'<figure><img src="{data_uri(png)}" alt="{html.escape(caption)}">'
            f"<figcaption>{_inline_html(caption)}</figcaption></figure>")


def card_html(blocks: list[tuple]) -> str:
    """The card as one self-contained page: its pictures are embedded, nothing is fetched."""
    from synthlora.report_pages import html_page, html_table

    out, title = [], "Model card"
    for kind, *a in blocks:
        if kind == "title":
            title = a[0]
            out.append(f"<h1>{_inline_html(a[0])}</h1>")
        elif kind == "heading":
            out.append(f"<h2>{_inline_html(a[0])}</h2>")
        elif kind == "paragraph":
            out.append(f"<p>{_inline_html(a[0])}</p>")
        elif kind == "note":
            out.append(f'<p class="note">{_inline_html(a[0])}</p>')
        elif kind == "table":
            out.append(html_table(a[0], a[1]))
        elif kind == "list":
            out.append("<ul>\n" + "\n".join(f"<li>{_inline_html(item)}</li>" for item in a[0]) + "\n</ul>")
        elif kind == "bars":
            out.append(_figure_html(a[1], "tag frequencies"))
        elif kind == "figure":
            out.append(_figure_html(a[0], a[2]))
        else:
            raise ValueError(f"unknown card block {kind!r}")
    return html_page(title, "\n".join(out))


def _fmt(v: str) -> str:
    try:
        return f"{float(v):.4f}"
    except ValueError:
        return v


def reference_statement(prov: list[dict], analyze: dict, character: dict) -> str:
    """Where the reference image went, from the per-image provenance (not from today's config)."""
    ref_inputs = [r["key"] for r in prov if r["reference_input"] == "yes"]
    if ref_inputs:  # reference mode: the card must not claim text-only generation
        return (f"The reference image WAS an input to image generation for {len(ref_inputs)} of the {len(prov)} "
                "training images (generate.openai.reference_mode: sent with the prompt to images.edit; "
                "`reference_input` in provenance.tsv); it was never a training image itself.")
    if analyze["backend"] == "manual":
        return ("The reference image was never an input to any model: the features were written by hand "
                f"(`{character.get('features_manual', '')}`).")
    return (f"The reference image was an input only to the analysis model (`{analyze['model']}`, "
            f"backend {analyze['backend']}), which turned it into text; it was never an input to image "
            "generation or training.")


def api_spend_lines(usage: dict) -> list[str]:
    """The API usage behind the current results (api_usage.json) as a list item, or nothing when no API was used."""
    total = usage.get("total", {})
    if not total.get("calls"):
        return []
    per_stage = ", ".join(f"{stage} {s['calls']}" for stage, s in usage["stages"].items() if s.get("calls"))
    tokens = ", ".join(f"{total[k]} {k.replace('_', ' ')}" for k in ("input_tokens", "output_tokens", "prompt_tokens",
                                                                       "completion_tokens") if total.get(k))
    return [f"API usage behind these results: {total['calls']} calls ({per_stage}), {total['images']} images"
            + (f", {tokens}" if tokens else "") + " (`api_usage.json`)."]


def feature_check_lines(selection_tsv) -> list[str]:
    """Each must-preserve feature's pass rate over the candidates (select.feature_checks), if checked."""
    from synthlora.selection import feature_pass_rates, feature_rates_line, read_tsv

    rates = feature_pass_rates(read_tsv(selection_tsv))
    if not rates:
        return []
    return [f"Must-preserve features kept, as the caption model judged every candidate (kept/asked; a "
            f"candidate without one was not trained on): {feature_rates_line(rates)}."]


def model_card(inputs, provenance: list[str], character: dict, cfg: dict, demo_models_dir: str = "") -> tuple[str, str]:
    """The card as Markdown and as a self-contained HTML page (for the report), from one list of
    blocks. ``inputs``: the rule's named inputs (see rules/evaluate.smk)."""
    from synthlora.evaluate import METRICS, read_tsv
    from synthlora.kohya import read_toml, validate_train

    name, trigger = character["name"], character["trigger"]
    card_dir = Path(inputs.lora).parent.parent  # results/<character>/lora/<character>.safetensors
    training = Path(os.path.relpath(Path(inputs.train_toml).parent, card_dir)).as_posix()  # train/<fingerprint>
    flat = validate_train(read_toml(inputs.train_toml))
    ds = read_toml(inputs.dataset_toml)["datasets"][0]
    sub = ds["subsets"][0]
    summary = read_json(inputs.train_summary)
    best = read_json(inputs.best)
    freq = read_json(inputs.tag_frequency)
    metrics = read_tsv(inputs.metrics)
    prov = provenance_rows(list(provenance), character["reference"])
    n_images = len(prov)
    meta = safetensors_metadata(inputs.lora)
    checked = verified_lora(inputs.lora)  # a damaged delivered file fails the card, naming it
    base_model = flat["pretrained_model_name_or_path"]
    demo = bool(demo_models_dir) and str(base_model).rstrip("/").startswith(demo_models_dir.rstrip("/"))
    res = ds["resolution"]
    resolution = f"{res[0]}x{res[1]}" if isinstance(res, list) else f"{res}x{res}"
    epochs = flat["max_train_epochs"]
    te_lr = flat.get("text_encoder_lr", [0.0])

    def figure(png, caption):
        return ("figure", str(png), Path(os.path.relpath(png, card_dir)).as_posix(), caption)

    out: list[tuple] = [("title", f"{name}: character LoRA")]
    if demo:
        out += [("note", "**Demo run.** The models are tiny random-weight stand-ins built by the workflow; the "
                 "pictures and metrics below are meaningless. The files, stages and tables are real.")]
    out += [("paragraph", f"Trigger word: `{trigger}` (write it first in the prompt)."),
            ("paragraph", f"Delivered file: `lora/{name}.safetensors` = epoch {best['epoch']} of {epochs} "
             f"(`{training}/epochs/{name}-{best['epoch']:06d}.safetensors`), chosen by {best['rule']}. "
             f"Every saved epoch is kept in `{training}/epochs/`; the folder is named by the training "
             "fingerprint (`fingerprint.json` there says what it was made of)."),
            ("heading", "Training settings"),
            ("table", ["Item", "Value"], [
                ["Base model", base_model],
                ["Model family", cfg["train"]["family"]],
                ["Dataset size", n_images],
                ["Resolution", resolution],
                ["repeats", sub["num_repeats"]],
                ["epochs", epochs],
                ["Steps", summary.get("steps", "")],
                ["Batch size", ds.get("batch_size", 1)],
                ["Network", f"LoRA ({flat['network_module']}), dim {flat['network_dim']}, alpha {flat['network_alpha']}"],
                ["UNet learning rate", flat.get("unet_lr", flat["learning_rate"])],
                ["Text-encoder learning rate", te_lr[0] if te_lr and not flat.get("network_train_unet_only") else "not trained"],
                ["Optimizer / schedule", f"{flat['optimizer_type']} / {flat['lr_scheduler']} (warm-up {flat.get('lr_warmup_steps', 0)})"],
                ["Mixed precision", meta.get("ss_mixed_precision", flat["mixed_precision"])],
                ["Seed", flat["seed"]],
                ["Trainer", f"{cfg['train']['backend']}"],
                ["Model hash (sshs_model_hash)", meta.get("sshs_model_hash", "")[:16]],
                ["Verified", f"`lora/{name}.safetensors`: {checked['tensors']} tensors ({checked['modules']} modules), "
                 f"{checked['bytes']} bytes, every tensor's bytes present; SHA-256 of the tensor bytes "
                 + ("matches the sshs_model_hash in its metadata" if checked["hash_in_metadata"] else
                    f"{checked['sha256_of_tensors'][:16]} (its metadata names no hash)")],
                ["Final loss", f"{summary['final_loss']:.4f}" if summary.get("final_loss") is not None else ""],
            ])]

    ordered = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
    out += [("heading", "Tag frequencies"),
            ("paragraph", f"Tags on the {n_images} training captions (chart: `report/tag_frequency.png`)."),
            ("bars", ordered, str(inputs.tag_frequency_chart)),
            ("table", ["Tag", "Count"], [[t, c] for t, c in ordered])]

    delivered_sheet = next(p for p in inputs.contact_sheets if Path(p).parent.name == best["run"])
    out += [("heading", "Evaluation: metrics per epoch"),
            ("paragraph", "Each saved epoch rendered the test-prompt suites "
             f"({', '.join(f'{s}: {len(p)}' for s, p in sorted(cfg['evaluate']['suites'].items()))} prompts) with "
             f"fixed seeds {cfg['evaluate']['seeds']}; `base` is the same suites without the LoRA. "
             "identity_dataset / identity_reference: mean cosine similarity of the test images' embeddings to "
             "the training images' / the reference's; prompt_adherence: image-text cosine similarity of each "
             "test image to its prompt without the trigger word; failure_rate: fraction flagged by the failure "
             f"detectors; combined = {' + '.join(f'{w} × {m}' for m, w in best['weights'].items())}. "
             f"Embeddings: `{cfg['evaluate']['embedder']}`."),
            ("table", ["run", "step", *METRICS, "combined", "Δ identity vs base", "delivered"],
             [[r["run"], r["step"], *[_fmt(r[m]) for m in METRICS], _fmt(r["combined"]),
               "" if r["run"] == "base" else _fmt(r["delta_identity_dataset"]),
               "yes" if r["best"] == "yes" else ""] for r in metrics]),
            ("paragraph", "Contact sheets: `eval/<epoch>/contact_sheet.png`; metrics per epoch: "
             "`report/metrics_vs_epoch.png`."),
            figure(inputs.metrics_chart, "Metrics per epoch (dashed: without the LoRA; dotted: the delivered epoch)"),
            figure(delivered_sheet, f"Test prompts without the LoRA and with the delivered epoch {best['epoch']}")]

    sources: dict[tuple, int] = {}
    for r in prov:
        sources[(r["source"], r["backend"], r["model"])] = sources.get((r["source"], r["backend"], r["model"]), 0) + 1
    not_generated = [r["key"] for r in prov if r["source"] != "generated"]
    same_as_ref = [r["key"] for r in prov if r["same_as_reference"] == "yes"]
    ref_use = reference_statement(prov, cfg["analyze"], character)
    out += [("heading", "Provenance"),
            ("table", ["Source", "Generator", "Model", "Training images"],
             [[s, b, m, n] for (s, b, m), n in sorted(sources.items())]),
            ("list", [
                f"All {n_images} training images were generated from text prompts by the generator(s) above; "
                + ("none is an artist-made image." if not not_generated else
                   f"{len(not_generated)} did not come from a generator: {', '.join(not_generated)}."),
                ref_use,
                ("No training image is byte-identical to the reference image." if not same_as_ref else
                 f"Training images identical to the reference: {', '.join(same_as_ref)}."),
                f"Captions: `{cfg['caption']['model']}` (backend {cfg['caption']['backend']}), trigger word first.",
                *feature_check_lines(inputs.selection),
                *api_spend_lines(read_json(inputs.api_usage)),
                *credentials_lines(list(provenance)),
                "Per-image record (key, source, generator, model, seed, time, SHA-256, prompt): `provenance.tsv`."])]

    license_ = cfg["model_card"]["license"]
    author = cfg["model_card"].get("author")
    out += [("heading", "Responsibility"), ("paragraph", RESPONSIBILITY),
            ("heading", "License"), ("paragraph", f"The LoRA is released under the {license_} license." +
                                     (f" Trained by {author}." if author else ""))]
    return card_markdown(out), card_html(out)
