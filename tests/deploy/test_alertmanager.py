"""Alertmanager configuration: valid for the real amtool (0.25), routes by severity."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pipeline.settings import StackSettings
from pipeline.stack.observability import AlertmanagerServer


def amtool(*args: str) -> str:
    binary = shutil.which("amtool")
    assert binary, "amtool is not installed (make setup installs prometheus-alertmanager)"
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"amtool {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def config(tmp_path):
    server = AlertmanagerServer(StackSettings(run_dir=tmp_path))
    return server.render_config("http://127.0.0.1:8003/alertmanager")


def test_rendered_config_passes_amtool_check_config(config):
    out = amtool("check-config", str(config))
    assert "SUCCESS" in out
    assert "3 inhibit rules" in out
    assert "http://127.0.0.1:8003/alertmanager" in config.read_text()


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (
            [
                "alertname=NegativeSentimentSpike",
                "severity=critical",
                "dimension=topic",
                "key=Energy",
            ],
            "finsentry-critical",
        ),
        (
            [
                "alertname=NegativeSentimentSpike",
                "severity=warning",
                "dimension=ticker",
                "key=ACME",
            ],
            "finsentry-warning",
        ),
        (["alertname=ClassifierDown", "severity=critical"], "finsentry-critical"),
        (["alertname=DeadLetterRate", "severity=warning"], "finsentry-warning"),
        (["alertname=Something", "severity=info"], "finsentry-info"),
        (["alertname=Unlabelled"], "finsentry-warning"),
    ],
)
def test_routing_by_severity(config, labels, receiver):
    out = amtool("config", "routes", "test", f"--config.file={config}", *labels)
    assert out.strip() == receiver
