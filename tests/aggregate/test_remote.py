"""``finsentry aggregate --remote`` against a real standalone Flink cluster (JobManager +
TaskManager started from the apache-flink distribution's own scripts): the job is
submitted with the connector jar, runs on the cluster, and its windows come out."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.aggregate.testing import produce, read_windows, scored, settings_env, watermark_movers

from .conftest import make_env

pytestmark = [pytest.mark.integration, pytest.mark.flink, pytest.mark.slow]

FLINK_HOME = Path(__import__("pyflink").__file__).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(rest_port: int, rpc_port: int, pid_dir: Path) -> str:
    return f"""\
jobmanager:
  bind-host: 127.0.0.1
  rpc: {{address: 127.0.0.1, port: {rpc_port}}}
  memory: {{process: {{size: 1024m}}}}
taskmanager:
  bind-host: 127.0.0.1
  host: 127.0.0.1
  numberOfTaskSlots: 1
  memory: {{process: {{size: 1600m}}}}
rest: {{address: 127.0.0.1, bind-address: 127.0.0.1, port: {rest_port}}}
env: {{pid: {{dir: {pid_dir}}}}}
"""


@pytest.fixture(scope="module")
def flink_cluster(tmp_path_factory):
    """A standalone session cluster on loopback; stopped (by its pid files) afterwards."""
    conf = tmp_path_factory.mktemp("flink-conf")
    logs = tmp_path_factory.mktemp("flink-log")
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties"):
        (conf / name).write_bytes((FLINK_HOME / "conf" / name).read_bytes())
    rest_port = _free_port()
    (conf / "config.yaml").write_text(_config(rest_port, _free_port(), logs))
    env = {
        **os.environ,
        "FLINK_HOME": str(FLINK_HOME),
        "FLINK_CONF_DIR": str(conf),
        "FLINK_LOG_DIR": str(logs),
    }
    scripts = FLINK_HOME / "bin"

    def daemon(script: str, action: str) -> None:
        subprocess.run(
            ["bash", str(scripts / script), action],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )

    daemon("jobmanager.sh", "start")
    daemon("taskmanager.sh", "start")
    url = f"http://127.0.0.1:{rest_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                overview = json.load(urllib.request.urlopen(f"{url}/overview", timeout=2))
                if overview["slots-available"] >= 1:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Flink cluster not ready; logs in {logs}")
            time.sleep(1)
        yield url
    finally:
        daemon("taskmanager.sh", "stop")
        daemon("jobmanager.sh", "stop")


def test_remote_submission_runs_the_job_on_the_cluster(stack, flink_cluster, tmp_path):
    rest = flink_cluster.removeprefix("http://")
    env = make_env(stack, tmp_path, jobmanager_address=rest, hopping_window_ms=0)
    kafka, settings = env.kafka, env.settings
    submitted = subprocess.run(
        [sys.executable, "-m", "pipeline.aggregate", "--remote"],
        env={**os.environ, **settings_env(kafka, settings)},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = submitted.stdout.split()[2]
    try:
        produce(
            kafka,
            [
                scored("r1", 10, sentiment="negative", score=-0.5, tickers=["AAPL"]),
                scored("r2", 20),
                scored("r1", 10, sentiment="negative", score=-0.5, tickers=["AAPL"]),
            ],
        )
        produce(kafka, watermark_movers(kafka, 70, "wm"))
        windows = read_windows(kafka, expected=3, timeout_seconds=120, settle_seconds=2)
        job = json.load(urllib.request.urlopen(f"{flink_cluster}/jobs/{job_id}"))
        assert job["state"] == "RUNNING"
    finally:
        request = urllib.request.Request(
            f"{flink_cluster}/jobs/{job_id}?mode=cancel", method="PATCH"
        )
        urllib.request.urlopen(request)
    assert sorted((w.dimension, w.key, w.articles) for w in windows) == [
        ("all", "all", 2),
        ("ticker", "AAPL", 1),
        ("topic", "earnings", 2),
    ]
    # The explicitly set checkpoint directory is the one the cluster wrote to.
    assert list(Path(settings.checkpoint_dir).glob(f"{job_id}/chk-*/_metadata"))
