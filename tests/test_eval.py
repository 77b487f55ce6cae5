"""`run.py eval` and `run.py ask` as the owner and the graders run them: the sample shop's own
regression cases, and the public harbor store scored by ../shared/eval/score.py."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT

HARBOR = ROOT.parent / "shared" / "eval"


def run(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_sample_shop_regression_cases_pass():
    result = run("eval")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "14 of 14 cases pass" in result.stdout


def test_eval_json_has_one_object_per_customer_turn():
    result = run("eval", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    cases = [json.loads(line) for line in (ROOT / "knowledge" / "conversations.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(c["turns"]) for c in cases)
    assert set(rows[0]) >= {"id", "turn", "route", "reply", "confidence", "reasons", "sources"}


def test_ask_prints_route_reply_and_sources():
    result = run("ask", "how much is the amber noir", "--channel", "sms", "--json")
    answer = json.loads(result.stdout)
    assert answer["route"] == "auto" and "$48" in answer["reply"] and answer["sources"] == ["catalog.csv#WW-104"]


@pytest.mark.skipif(not (HARBOR / "score.py").exists(), reason="../shared/eval is not beside this clone")
def test_public_store_meets_the_quality_bar(tmp_path):
    result = run("--config", str(HARBOR / "harbor" / "settings.toml"), "eval",
                 str(HARBOR / "harbor" / "cases.jsonl"), "--json")
    results = tmp_path / "harbor-results.jsonl"
    results.write_text(result.stdout)
    score = subprocess.run([sys.executable, str(HARBOR / "score.py"), str(HARBOR / "harbor" / "cases.jsonl"),
                            str(results), "--min-automation", "0.7"], capture_output=True, text=True, timeout=60)
    assert score.returncode == 0, score.stdout
    assert "unsafe auto 0" in score.stdout and "tone 0" in score.stdout
