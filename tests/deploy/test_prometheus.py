"""Prometheus configuration and rules, checked by the real promtool (Prometheus 2.42)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT, StackSettings
from pipeline.stack.observability import RULES_DIR, PrometheusServer

RULE_TESTS = sorted((REPO_ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed (make setup installs the prometheus package)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def test_rules_pass_promtool_check():
    rule_files = sorted(str(p) for p in RULES_DIR.glob("*.yml"))
    assert len(rule_files) >= 2
    out = promtool("check", "rules", *rule_files).stdout
    assert "SUCCESS" in out


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests(test_file: Path):
    assert "SUCCESS" in promtool("test", "rules", str(test_file)).stdout


def test_rule_unit_tests_cover_every_alert():
    rules = "".join(p.read_text() for p in RULES_DIR.glob("*.yml"))
    tests = "".join(p.read_text() for p in RULE_TESTS)
    for alert in (
        "NegativeSentimentSpike",
        "NoNewsIngested",
        "ClassifierDown",
        "ConsumerLagGrowing",
        "DeadLetterRate",
        "AggregationStalled",
    ):
        assert f"alert: {alert}" in rules
        assert f"alertname: {alert}" in tests


def test_rendered_local_config_passes_promtool_check_config(tmp_path):
    server = PrometheusServer(StackSettings(run_dir=tmp_path))
    server.process.dir.mkdir(parents=True, exist_ok=True)
    config = server.render_config()
    out = promtool("check", "config", str(config))
    assert "SUCCESS" in out.stdout + out.stderr


def test_compose_config_passes_promtool_check_config(tmp_path):
    # The compose file names rules by their in-container path; point it at the repo's.
    text = (REPO_ROOT / "deploy" / "prometheus" / "prometheus.compose.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules/*.yml", str(RULES_DIR / "*.yml")))
    promtool("check", "config", str(config))
