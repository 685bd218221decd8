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


def test_replicas_run_in_their_own_processes_and_report_their_joint_rate():
    """bench/classifier.py --replicas (CUDA only in the script); the mechanism on CPU."""
    sys.path.insert(0, str(BENCH))  # the spawned replicas import it from there too
    try:
        import classifier

        texts = classifier.load_headlines(40)
        rates = classifier.replicas_throughput(None, "cpu", texts, [2])
    finally:
        sys.path.remove(str(BENCH))
    assert set(rates) == {"2"} and rates["2"] > 0
