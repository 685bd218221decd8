"""`make bench` runs every bench/*.py with --quick: each must accept it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_benchmark_has_a_quick_mode(script):
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--quick" in result.stdout


@pytest.mark.parametrize("name", ["alert_noise", "explain"])
def test_the_cheap_quick_benchmarks_run_and_write_their_result(name, tmp_path):
    """These two take 10-15 s on the shipped model (the others need minutes or a broker)."""
    out = tmp_path / f"{name}.json"
    result = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["quick"] is True
