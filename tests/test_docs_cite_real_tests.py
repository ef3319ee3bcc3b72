"""Every test the documentation cites by name exists (a renamed test leaves no dangling reference)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _documents() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", *sorted(ROOT.glob("*/**/*.md"))]


def test_every_cited_test_name_is_defined() -> None:
    tests = list((ROOT / "tests").rglob("*.py"))
    defined = {
        name for p in tests for name in re.findall(r"^\s*(?:async\s+)?def (test_\w+)", p.read_text(), re.M)
    }
    modules = {p.stem for p in tests}
    cited = {
        (name, doc.relative_to(ROOT).as_posix())
        for doc in _documents()
        if "runs" not in doc.relative_to(ROOT).parts
        for name in re.findall(r"\b(test_\w+)", doc.read_text())
    }
    dangling = sorted(f"{doc}: {name}" for name, doc in cited if name not in defined | modules)
    assert not dangling, dangling
    assert len(cited) > 50  # the scan found the docs' citations
