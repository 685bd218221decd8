"""The local stack: Kafka (KRaft), Prometheus and Alertmanager on loopback.

``up`` installs what is missing, starts each server, and waits until each one
really answers (Kafka metadata, ``/-/ready``); it is idempotent. ``down`` stops
exactly the processes ``up`` started, by PID.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pipeline.settings import KafkaSettings, StackSettings
from pipeline.stack.install import install_all
from pipeline.stack.kafka import KafkaServer
from pipeline.stack.observability import AlertmanagerServer, PrometheusServer
from pipeline.stack.process import ManagedProcess, StackError

__all__ = ["LocalStack", "StackError", "ServerStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    pid: int | None
    address: str
    ready: bool


class LocalStack:
    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings()
        self.kafka = KafkaServer(self.settings)
        self.prometheus = PrometheusServer(self.settings)
        self.alertmanager = AlertmanagerServer(self.settings)

    @property
    def servers(self):
        return (self.kafka, self.alertmanager, self.prometheus)

    def kafka_settings(self, **overrides) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.settings.kafka_bootstrap, **overrides)

    def up(self) -> list[ServerStatus]:
        install_all(self.settings.cache_dir)
        timeout = self.settings.start_timeout_seconds
        for server in self.servers:
            server.start()
        for server in self.servers:
            server.process.wait_ready(server.is_ready, timeout)
            log.info("%s ready", server.name)
        self.kafka.configure_users()
        from pipeline.kafka_io import ensure_topics

        ensure_topics(self.kafka_settings())
        return self.status()

    def pipeline_processes(self) -> list[ManagedProcess]:
        """Stages started by `finsentry demo --keep` or `finsentry run` (run_dir/demo/<run>/<stage>)."""
        demo_dir = self.settings.run_dir / "demo"
        return [
            ManagedProcess(pid_file.parent.name, pid_file.parent.parent)
            for pid_file in sorted(demo_dir.glob("*/*/*.pid"))
        ]

    def down(self) -> list[str]:
        stopped = []
        # Pipeline stages first (they talk to the servers), then Prometheus so that it
        # does not alert on the others going away.
        for process in self.pipeline_processes():
            if process.stop():
                stopped.append(f"{process.name} ({process.run_dir.name})")
        for server in reversed(self.servers):
            if server.process.stop():
                stopped.append(server.name)
        return stopped

    def status(self) -> list[ServerStatus]:
        s = self.settings
        addresses = {
            "kafka": s.kafka_bootstrap,
            "prometheus": s.prometheus_url,
            "alertmanager": s.alertmanager_url,
        }
        result = []
        for server in self.servers:
            pid = server.process.pid()
            ready = False
            if pid is not None:
                try:
                    ready = server.is_ready()
                except Exception:  # noqa: BLE001 - status reports, it does not fail
                    ready = False
            result.append(ServerStatus(server.name, pid, addresses[server.name], ready))
        return result
