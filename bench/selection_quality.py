"""Selection quality on the labelled set (tests/labelled.py: drawn pictures of Mira, good ones
and every defect class a dataset stage must catch): per defect class, how many files, how many
kept, how many should have been kept, and how many got the right outcome (a keeper kept; a
reject rejected for the right reason); duplicate groups: exactly one kept.

    OMP_NUM_THREADS=1 PYTHONPATH=src:tests python bench/selection_quality.py [--ocr tesseract|''] [--keep DIR]

Runs what the workflow runs for a folder source (folder plan, generate, score, select) with the
schema's default thresholds, training resolution 256 (the set's size: select.min_side 128) and
a count above the set's size, so every picture that passes is kept. No embedder: identity is
not judged (the demo embedder has random weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from labelled import REASONS, judge, select_labelled, write_labelled_set  # tests/labelled.py
from synthlora.config import config_problem

REPO = Path(__file__).resolve().parents[1]


def select_defaults() -> dict:
    cfg = {"characters": {"x": {"reference": "r.png", "description": "d.md", "trigger": "x"}}}
    assert config_problem(cfg, REPO / "config" / "config.schema.yaml") is None
    return cfg["select"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ocr", default="tesseract", help="OCR program ('' skips text detection)")
    parser.add_argument("--keep", help="write the set and the results here instead of a temporary folder")
    args = parser.parse_args(argv)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="selection-quality-"))
    labels, reference = write_labelled_set(root / "labelled" / "images")
    settings = {**select_defaults(), "count": 1000, "min_side": 128}
    start = time.perf_counter()
    rows, by_file = select_labelled(root / "labelled" / "images", reference, root / "work", settings, ocr=args.ocr)
    seconds = time.perf_counter() - start
    table = judge(labels, by_file)
    print(f"{len(labels)} files, {len(rows)} candidates; folder plan + generate + score + select in {seconds:.0f} s "
          f"({root})\n")
    print(f"| {'class':24s} | files | kept | should keep | right outcome |")
    print(f"|{'-' * 26}|------:|-----:|------------:|--------------:|")
    order = [d for d in REASONS if d in table] + ["duplicate groups"]
    for defect in order:
        t = table[defect]
        print(f"| {defect:24s} | {t['files']:5d} | {t['kept']:4d} | {t['should_keep']:11d} | {t['reason_right']:13d} |")
    keepers = [lb for lb in labels if lb.keep]
    bad = [lb for lb in labels if not lb.keep and lb.defect != "duplicate"]
    kept_good = sum(by_file[lb.file]["selected"] for lb in keepers)
    kept_bad = sum(by_file[lb.file]["selected"] for lb in bad)
    print(f"\ngood images kept: {kept_good} of {len(keepers)} ({kept_good / len(keepers):.0%}); "
          f"bad images kept: {kept_bad} of {len(bad)}; duplicate groups with exactly one kept: "
          f"{table['duplicate groups']['kept']} of {table['duplicate groups']['files']}")
    wrong = [w for d in order for w in table[d]["wrong"]]
    if wrong:
        print("\nwrong outcomes:\n  " + "\n  ".join(wrong))
    return 0 if not wrong else 1


if __name__ == "__main__":
    sys.exit(main())
