"""Every bench script runs end to end at a tiny size: the figures in bench/RESULTS.md come from
scripts that still work (their numbers are not checked here; timed assertions don't belong in
tests on a shared machine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import _pg_admin_connect, postgres_url
from servers import dovecot_binary

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(dovecot_binary() is None and not os.environ.get("CI"), reason="needs Dovecot")

RUNS = {
    "backlog": ["bench/backlog.py", "--messages", "30"],
    "chat": ["bench/chat.py", "--visitors", "3", "--questions", "1", "--runs", "1", "--sessions", "5",
             "--pause", "0", "0.1", "--settle", "0.5", "--idle-seconds", "1"],
    "latency": ["bench/latency.py", "--emails", "2", "--texts", "3", "--rate", "20", "--seconds", "1"],
    "memory-start": ["bench/memory.py", "start", "--starts", "1"],
    "memory-soak": ["bench/memory.py", "soak", "--soak-minutes", "0.5", "--sms"],
    "llm-cost": ["bench/llm_cost.py", "--questions", "3"],
    "orders": ["bench/orders.py", "--orders", "20", "--messages", "3", "--runs", "1", "--faq", "4",
               "--order-questions", "2"],
}


def _run(args: list[str], timeout: int = 300) -> dict:
    done = subprocess.run([sys.executable, *args, "--json"], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.soak) if n == "memory-soak" else n
                                  for n in sorted(RUNS)])
def test_bench_script_runs(name):
    result = _run(RUNS[name])
    assert result


def test_bench_processes_runs():
    try:
        _pg_admin_connect().close()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {postgres_url()} is not reachable ({exc})")
        pytest.skip(f"PostgreSQL at {postgres_url()} is not reachable ({exc})")
    result = _run(["bench/processes.py", "--messages", "20", "--processes", "1",
                   "--database-url", postgres_url()])
    assert result["replies"] == 20
