"""docs/THREAT_MODEL.md: every row names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    text = (ROOT / "docs" / "THREAT_MODEL.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith(("| can / cannot", "| asset"))]


def test_every_row_names_a_test_that_exists() -> None:
    rows = _rows()
    assert len(rows) >= 40
    missing = []
    for row in rows:
        refs = REF.findall(row)
        if not refs and "](" not in row and not row.startswith("| citizens") and \
                row.split("|")[1].strip() not in _ASSET_NAMES:
            missing.append(f"no test named: {row[:80]}")
        for path, name in refs:
            source = ROOT / path
            if not source.is_file() or not re.search(rf"^def {name}\(", source.read_text(
                    encoding="utf-8"), re.MULTILINE):
                missing.append(f"{path}::{name}")
    assert not missing, missing


_ASSET_NAMES = {"citizens' claim values and identifiers", "holder keys",
                "issuing keys (one per agency)", "node keys (one per agency)",
                "the ledger's history", "the registry (agencies, keys, grants, types, quorum)",
                "credential status", "availability of a node"}


def test_no_row_is_left_without_its_test() -> None:
    text = (ROOT / "docs" / "THREAT_MODEL.md").read_text(encoding="utf-8")
    assert "TODO" not in text
