"""Each bench script starts on a tiny input and prints its floor line (figures are not checked:
benches print, they never assert; this only keeps them runnable as the code moves on).

Only the cheap ones run here. Not run: the pipeline bench (it starts the whole stack: over a
minute on a loaded machine), the desktop bench (a browser), routing and ingestion (their fixed
phases and warm-up take 40-75 s on a loaded machine), the dialer's and the database's own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HOPS = {
    "bench_threading.py": (["--mails", "3"], "threading"),
    "bench_agent_state.py": (["--agents", "3", "--rounds", "1"], "agent_state"),
}


def _run(script: str, args: list[str], **env: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_floor_bench_prints_the_bare_loops_rate() -> None:
    out = _run("bench_floor.py", ["--messages", "20"])
    assert re.search(r"^floor = \d+\.\d msg/s$", out, re.MULTILINE), out


@pytest.mark.parametrize("script", sorted(HOPS))
def test_a_hop_bench_prints_its_share_of_the_floor(script: str) -> None:
    args, name = HOPS[script]
    # the floor handed on as `make bench` does, so the tiny run does not measure it again
    out = _run(script, args, BENCH_FLOOR_MSG_S="100.0")
    assert re.search(rf"^{name} = .*  {name}/floor = \d+\.\d\d$", out, re.MULTILINE), out
    if script == "bench_threading.py":
        assert re.search(r"^per new mail: [\d.]+ database commands", out, re.MULTILINE), out
