"""docs/SECURITY.md names, for every attack, the test that performs it. Each name must stay defined:
a renamed or deleted test breaks this instead of leaving a row that points at nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "SECURITY.md"


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "tests").rglob("test_*.py"), *(ROOT / "contracts" / "evm" / "test").rglob("*.t.sol")]:
        names.update(re.findall(r"(?:def|function)\s+(test\w+)", path.read_text()))
    return names


def test_every_test_the_threat_model_names_exists() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"`(test_\w+)`", text))
    files = set(re.findall(r"`(tests/[\w/]+\.py)`", text))
    assert len(named) >= 40, "the threat model names the tests that show each defence"
    missing = sorted(named - _defined_tests())
    assert not missing, f"docs/SECURITY.md names tests that do not exist: {missing}"
    absent = sorted(f for f in files if not (ROOT / f).is_file())
    assert not absent, f"docs/SECURITY.md names test files that do not exist: {absent}"


def test_every_attacker_of_the_issue_has_a_section() -> None:
    headings = re.findall(r"^## (.+)$", DOC.read_text(), flags=re.M)
    for attacker in ("Outsider", "Front-runner", "Malicious relayer", "Malicious worker", "Malicious requester",
                     "Fewer than t attesters", "t or more attesters", "An RPC provider that lies"):
        assert any(h.startswith(attacker) for h in headings), f"no section for {attacker!r}"
