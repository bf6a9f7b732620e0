"""Pictures for people who would rather look than read: contact sheets and charts (PIL and
matplotlib only, no torch, so the rules that draw them stay light)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from synthlora.io import atomic_path


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _thumb(path, cell: int) -> Image.Image:
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((cell, cell), Image.Resampling.LANCZOS if min(im.size) >= cell else Image.Resampling.NEAREST)
            if max(im.size) < cell:  # tiny demo images: scale up so they can be seen
                s = cell / max(im.size)
                im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.NEAREST)
            return im
    except Exception:
        im = Image.new("RGB", (cell, cell), (80, 0, 0))
        ImageDraw.Draw(im).text((4, 4), "unreadable", fill="white", font=_font(12))
        return im


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """At most ``lines`` lines of ``width`` characters; a cut-off text ends in "..."."""
    if lines <= 1:
        return [text[:width]]
    wrapped = textwrap.wrap(text, width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 3] + "..."
    return wrapped


def contact_sheet(images: Sequence[Sequence[str | Path | None]], row_labels: Sequence[str] | None = None,
                  column_labels: Sequence[str] | None = None, out: str | Path | None = None, cell: int = 160,
                  label_width: int = 300, title: str = "", cell_labels: Sequence[Sequence[str]] | None = None,
                  borders: Sequence[Sequence[str | None]] | None = None, label_lines: int = 1) -> Image.Image:
    """A grid: ``images[r][c]`` (a path, or None for an empty cell), rows labelled on the left
    (e.g. prompts), columns on top (e.g. base / epoch), optional caption under each cell (wrapped
    onto up to ``label_lines`` lines) and an optional border colour per cell. Saved to ``out`` (PNG)
    when given."""
    n_rows = len(images)
    n_cols = max((len(r) for r in images), default=0)
    pad = 6
    font, small = _font(14), _font(11)
    left = label_width if row_labels else 0
    top = (28 if title else 0) + (22 if column_labels else 0)
    under = (3 + 13 * max(1, label_lines)) if cell_labels else 0
    width = left + n_cols * (cell + pad) + pad
    height = top + n_rows * (cell + under + pad) + pad
    sheet = Image.new("RGB", (max(width, 200), max(height, 40)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, 6), title, fill="black", font=_font(16))
    if column_labels:
        for c, label in enumerate(column_labels):
            draw.text((left + pad + c * (cell + pad), top - 20), str(label), fill="black", font=font)
    chars = max(10, label_width // 8)
    for r, row in enumerate(images):
        y = top + pad + r * (cell + under + pad)
        if row_labels:
            text = "\n".join(textwrap.wrap(str(row_labels[r]), chars)[: max(1, cell // 16)])
            draw.multiline_text((pad, y), text, fill="black", font=font, spacing=2)
        for c, path in enumerate(row):
            x = left + pad + c * (cell + pad)
            if path is None:
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], outline=(200, 200, 200))
                continue
            im = _thumb(path, cell)
            sheet.paste(im, (x + (cell - im.width) // 2, y + (cell - im.height) // 2))
            colour = borders[r][c] if borders else None
            if colour:
                draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=colour, width=3)
            if cell_labels and cell_labels[r][c]:
                draw.multiline_text((x, y + cell + 2), "\n".join(_wrap(str(cell_labels[r][c]), cell // 6, label_lines)),
                                    fill="black", font=small, spacing=1)
    if out:
        with atomic_path(out) as tmp:
            sheet.save(tmp, format="PNG")
    return sheet


def _save(fig, out) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bar_chart(counts: dict[str, int | float], out: str | Path, title: str = "", xlabel: str = "count",
              total: int | None = None) -> None:
    """Horizontal bars, largest first (seed 000's tag-frequency chart)."""
    plt = _plt()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(7, max(2.0, 0.28 * len(items) + 1)))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#4878a8")
    if total:
        ax.axvline(total, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(0, total * 1.05)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    _save(fig, out)


def line_plot(x: Sequence, series: dict[str, Sequence[float]], out: str | Path, title: str = "",
              xlabel: str = "", baselines: dict[str, float] | None = None, mark_x=None) -> None:
    """One panel per series (they have different scales), optional dashed baseline per series and a
    vertical marker (e.g. the delivered epoch)."""
    plt = _plt()
    n = max(1, len(series))
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.8 * n + 0.6), sharex=True, squeeze=False)
    for ax, (name, ys) in zip(axes[:, 0], series.items()):
        ax.plot(list(x), list(ys), marker="o")
        if baselines and name in baselines:
            ax.axhline(baselines[name], color="grey", linestyle="--", linewidth=1, label="baseline (no LoRA)")
            ax.legend(fontsize=7, loc="best")
        if mark_x is not None:
            ax.axvline(mark_x, color="green", linestyle=":", linewidth=1)
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel(xlabel)
    if title:
        axes[0, 0].set_title(title)
    _save(fig, out)


def loss_curve(losses: list[dict], out: str | Path, title: str = "training loss") -> None:
    """Per-step loss and its per-epoch mean, from train_summary.json's ``losses``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3))
    steps = [l["step"] for l in losses]
    ax.plot(steps, [l["loss"] for l in losses], color="#9ab", linewidth=1, label="step")
    epochs: dict[int, list] = {}
    for l in losses:
        epochs.setdefault(l["epoch"], []).append(l)
    ax.plot([max(x["step"] for x in ls) for ls in epochs.values()],
            [sum(x["loss"] for x in ls) / len(ls) for ls in epochs.values()],
            marker="o", color="#c33", label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    _save(fig, out)


# ---- the workflow's pictures -------------------------------------------------------------------


def eval_contact_sheet(outputs_json: Sequence[str], image_dirs: Sequence[str], out: str | Path, title: str = "") -> None:
    """One row per test prompt, one column per (run, seed): the baseline first, then the checkpoint."""
    from synthlora.io import read_json

    runs = [(read_json(o), Path(d)) for o, d in zip(outputs_json, image_dirs)]
    first = runs[0][0]["images"]
    prompts = []
    for im in first:
        if (im["suite"], im["prompt"]) not in prompts:
            prompts.append((im["suite"], im["prompt"]))
    seeds = sorted({im["seed"] for im in first})
    columns, grid = [], [[] for _ in prompts]
    for data, d in runs:
        by = {(im["suite"], im["prompt"], im["seed"]): d / im["file"] for im in data["images"]}
        label = "no LoRA" if data["run"] == "base" else f"epoch {int(data['run'])}"
        for seed in seeds:
            columns.append(f"{label}, seed {seed}")
            for r, (suite, prompt) in enumerate(prompts):
                grid[r].append(by.get((suite, prompt, seed)))
    contact_sheet(grid, [f"[{s}] {p}" for s, p in prompts], columns, out=out, title=title)


def selection_sheet(selection_rows: list[dict], image_for_key: dict[str, str], out: str | Path,
                    columns: int = 8, title: str = "") -> None:
    """Every candidate in plan order, green border if selected, red if not, below it the file name
    (your own images) or key and the whole reason, wrapped."""
    from synthlora.selection import tile_label

    cell = 128
    cells = [(image_for_key.get(r["key"]), r) for r in selection_rows]
    grid, labels, borders = [], [], []
    for i in range(0, len(cells), columns):
        chunk = cells[i:i + columns]
        grid.append([c[0] for c in chunk])
        labels.append([tile_label(r) for _, r in chunk])
        borders.append([("#2a2" if r["selected"] else "#c33") for _, r in chunk])
    lines = max((len(textwrap.wrap(label, cell // 6)) for row in labels for label in row), default=1)
    contact_sheet(grid, None, None, out=out, title=title, cell=cell, cell_labels=labels, borders=borders,
                  label_lines=max(2, lines))


def dataset_sheet(images: Sequence[str | Path], captions: Sequence[str | Path], out: str | Path,
                  columns: int = 6, title: str = "") -> None:
    """Every training image with its caption wrapped beneath it: what the LoRA learns from, at a glance."""
    texts = [Path(c).read_text(encoding="utf-8").strip() for c in captions]
    cell = 160
    lines = min(8, max((len(textwrap.wrap(t, cell // 6)) for t in texts), default=1))
    grid = [list(images[i:i + columns]) for i in range(0, len(images), columns)]
    labels = [texts[i:i + columns] for i in range(0, len(texts), columns)]
    contact_sheet(grid, None, None, out=out, title=title, cell=cell, cell_labels=labels, label_lines=max(2, lines))


def report_pictures(inputs, outputs, character: str, trigger: str) -> None:
    """The four per-character charts of rule report_pictures (inputs/outputs: its named files)."""
    import json

    from synthlora.evaluate import BASE, METRICS, read_tsv as read_metrics
    from synthlora.selection import counts_line, read_tsv

    freq = json.loads(Path(inputs.tag_frequency).read_text())
    total = max(freq.values()) if freq else None
    bar_chart(freq, outputs.tag_frequency, title=f"{character}: tag frequencies ({total} captions)",
              xlabel="captions", total=total)

    rows = read_tsv(inputs.selection)
    images = {r["key"]: Path(inputs.selection).parent / "images" / f"{r['key']}.png" for r in rows}
    selection_sheet(rows, images, outputs.selection_sheet, title=f"{character}: {counts_line(rows)}")

    summary = json.loads(Path(inputs.train_summary).read_text())
    loss_curve(summary.get("losses", []), outputs.loss_curve, title=f"{character}: training loss")

    metrics = read_metrics(inputs.metrics)
    base = next((r for r in metrics if r["run"] == BASE), None)
    epochs = [r for r in metrics if r["run"] != BASE]
    best = next((int(r["epoch"]) for r in epochs if r["best"] == "yes"), None)
    names = [*METRICS, "combined"]
    line_plot([int(r["epoch"]) for r in epochs], {m: [float(r[m]) for r in epochs] for m in names},
              outputs.metrics_vs_epoch, title=f"{character}: metrics per epoch (dotted: delivered)",
              xlabel="epoch", baselines={m: float(base[m]) for m in names} if base else None, mark_x=best)
