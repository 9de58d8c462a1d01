"""make claims: each claim logs its verdict and evidence; the table names failures."""

import json
import sys
from pathlib import Path

import pytest

from skiplab import claim
from skiplab.claims import ClaimFailed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import claims_table  # noqa: E402


def test_claims_append_their_verdict_and_evidence_to_the_log(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("SKIPLAB_CLAIMS_LOG", str(log))
    monkeypatch.setenv("SKIPLAB_CLAIMS_CHAPTER", "toy")
    monkeypatch.setenv("SKIPLAB_SEED", "7")
    claim("two is more than one", 2 > 1, ratio=2.0)
    with pytest.raises(ClaimFailed):
        claim("one is more than two", 1 > 2, ratio=0.5)
    first, second = (json.loads(line) for line in log.read_text().splitlines())
    assert first == {**first, "chapter": "toy", "seed": 7, "text": "two is more than one",
                     "holds": True, "evidence": {"ratio": "2"}}
    assert second["holds"] is False and second["evidence"] == {"ratio": "0.5"}
    assert first["threads"] >= 1 and first["scale"] in ("quick", "gpu", "paper")


def test_no_log_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("SKIPLAB_CLAIMS_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    claim("quiet", True)
    assert list(tmp_path.iterdir()) == []


def _record(seed, holds, value):
    return {"chapter": "c", "seed": seed, "threads": 1, "scale": "quick", "text": "x > 1",
            "holds": holds, "evidence": {"x": value}}


def test_the_table_names_the_runs_a_claim_failed_in(tmp_path):
    runs = [{"chapter": "c", "seed": s, "threads": 1, "seconds": 1.0, "errors": 0,
             "records": [_record(s, s != 2, f"{1.5 - s / 4:g}")]} for s in range(4)]
    assert claims_table.write_tables(runs, tmp_path) is False
    summary = (tmp_path / "claims.md").read_text()
    assert "| c | x > 1 | 3/4 | 2/1 |" in summary
    evidence = (tmp_path / "evidence.md").read_text()
    assert "| 2 | 1 | NO | 1 |" in evidence and "| 0 | 1 | yes | 1.5 |" in evidence


def test_a_run_with_a_cell_error_or_no_claim_fails_the_table(tmp_path):
    held = [{"chapter": "c", "seed": 0, "threads": 1, "seconds": 1.0, "errors": 0,
             "records": [_record(0, True, "2")]}]
    assert claims_table.write_tables(held, tmp_path) is True
    broken = held + [{"chapter": "c", "seed": 1, "threads": 1, "seconds": 1.0, "errors": 1,
                      "records": []}]
    assert claims_table.write_tables(broken, tmp_path) is False
    assert "c seed 1 threads 1: 1 cell errors" in (tmp_path / "claims.md").read_text()
