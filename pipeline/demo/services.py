"""Start finsentry's stages as processes for one pipeline run.

Each stage is ``finsentry <stage>`` in its own process session with its log
and PID file in the run directory (the same :class:`ManagedProcess` that runs
the stack's servers), configured entirely through ``FINSENTRY_*`` environment
variables: exactly how docker-compose or a cluster runs them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipeline.settings import KafkaSettings, StackSettings
from pipeline.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)

FINSENTRY = [sys.executable, "-m", "pipeline.cli"]


@dataclass(frozen=True)
class Ports:
    classifier: int = 8001
    exporter: int = 8002
    notifier: int = 8003
    articles: int = 8005


@dataclass
class PipelineServices:
    """The long-running stages of one run: aggregate, classify, export, notify, articles-sink."""

    run_dir: Path
    kafka: KafkaSettings
    stack: StackSettings
    ports: Ports = field(default_factory=Ports)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.processes = {
            name: ManagedProcess(name, self.run_dir)
            for name in ("aggregate", "classify", "export", "notify", "articles-sink")
        }

    @property
    def aggregate_status_file(self) -> Path:
        return self.run_dir / "aggregate" / "status.json"

    @property
    def notifier_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.notifier}/alertmanager"

    @property
    def articles_database_url(self) -> str:
        """The run's article store: written by articles-sink, read by the notifier."""
        return f"sqlite:///{self.run_dir / 'articles.db'}"

    def env(self) -> dict[str, str]:
        k = self.kafka
        return {
            "FINSENTRY_KAFKA_BOOTSTRAP_SERVERS": k.bootstrap_servers,
            "FINSENTRY_KAFKA_TOPIC_RAW": k.topic_raw,
            "FINSENTRY_KAFKA_TOPIC_SCORED": k.topic_scored,
            "FINSENTRY_KAFKA_TOPIC_DLQ": k.topic_dlq,
            "FINSENTRY_KAFKA_TOPIC_WINDOWS": k.topic_windows,
            "FINSENTRY_STACK_RUN_DIR": str(self.stack.run_dir),
            "FINSENTRY_AGGREGATE_CHECKPOINT_DIR": str(self.run_dir / "aggregate" / "checkpoints"),
            "FINSENTRY_CLASSIFIER_METRICS_PORT": str(self.ports.classifier),
            "FINSENTRY_EXPORTER_METRICS_PORT": str(self.ports.exporter),
            "FINSENTRY_NOTIFIER_PORT": str(self.ports.notifier),
            "FINSENTRY_ARTICLES_DATABASE_URL": self.articles_database_url,
            "FINSENTRY_ARTICLES_METRICS_PORT": str(self.ports.articles),
            "FINSENTRY_ARTICLES_GROUP_ID": f"finsentry-articles-{self.run_dir.name}",
            "FINSENTRY_ARTICLES_PIPELINE": self.run_dir.name,
            "FINSENTRY_NOTIFIER_ARTICLES_DATABASE_URL": self.articles_database_url,
            # Groups of their own: a group shared with other runs on other topics
            # would split partitions between members that do not read them.
            "FINSENTRY_CLASSIFIER_GROUP_ID": f"finsentry-classifier-{self.run_dir.name}",
            "FINSENTRY_AGGREGATE_GROUP_ID": f"finsentry-aggregate-{self.run_dir.name}",
            # Every window series carries pipeline=<run>, so each run has its own baseline.
            "FINSENTRY_EXPORTER_PIPELINE": self.run_dir.name,
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def _commands(self) -> dict[str, list[str]]:
        return {
            "aggregate": [*FINSENTRY, "aggregate", "--restore", "none",
                          "--status-file", str(self.aggregate_status_file)],
            "classify": [*FINSENTRY, "classify"],
            "export": [*FINSENTRY, "export", "--register"],
            "notify": [*FINSENTRY, "notify"],
            "articles-sink": [*FINSENTRY, "articles", "sink"],
        }

    def start(self) -> None:
        env = {**os.environ, **self.env()}
        for name, command in self._commands().items():
            self.processes[name].start(command, env=env)

    def wait_ready(self, timeout_seconds: float = 300.0) -> None:
        """Block until every stage answers: Flink RUNNING, metrics endpoints and /healthz up."""
        probes = {
            "notify": lambda: _http_ok(f"http://127.0.0.1:{self.ports.notifier}/healthz"),
            "export": lambda: _http_ok(f"http://127.0.0.1:{self.ports.exporter}/metrics"),
            "classify": lambda: _http_ok(f"http://127.0.0.1:{self.ports.classifier}/metrics"),
            "aggregate": self._aggregate_running,
            "articles-sink": lambda: _http_ok(f"http://127.0.0.1:{self.ports.articles}/metrics"),
        }
        for name, probe in probes.items():
            self.processes[name].wait_ready(probe, timeout_seconds)
            log.info("%s ready", name)

    def _aggregate_running(self) -> bool:
        try:
            status = json.loads(self.aggregate_status_file.read_text())
        except (OSError, ValueError):
            return False
        return status.get("state") == "RUNNING"

    def stop(self) -> None:
        # Ingest side first, so that nothing downstream stops while work is in flight.
        for name in ("classify", "aggregate", "articles-sink", "export", "notify"):
            self.processes[name].stop(timeout_seconds=60)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if not process.is_running():
                raise StackError(f"stage {name} exited; see {process.log_file}:\n{process.log_tail()}")


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200

