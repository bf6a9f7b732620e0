"""``analyze`` backend ``manual``: the user writes the features file; it is validated like any answer."""

from __future__ import annotations

from pathlib import Path


class ManualAnalyzer:
    def __init__(self, features_file: str | Path):
        self.features_file = Path(features_file)

    def analyze(self, reference: Path, description: str, instruction: str, schema: dict, attempt: int = 0) -> str:
        if not self.features_file.exists():
            raise FileNotFoundError(
                f"analyze.backend is 'manual' but {self.features_file} does not exist: write the character's "
                "features there (JSON following the feature schema) or set characters.<name>.features_manual")
        return self.features_file.read_text(encoding="utf-8")
