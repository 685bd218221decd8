"""The local single-node KRaft Kafka broker."""

from __future__ import annotations

import logging
import subprocess
import uuid
from pathlib import Path
from string import Template

from pipeline.settings import REPO_ROOT, StackSettings
from pipeline.stack.install import java_binary, kafka_libs
from pipeline.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)

CONFIG_TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "server.properties"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.yaml"


class KafkaServer:
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.run_dir)

    @property
    def data_dir(self) -> Path:
        return self.process.dir / "data"

    @property
    def config_file(self) -> Path:
        return self.process.dir / "server.properties"

    def render_config(self) -> Path:
        s = self.settings
        text = Template(CONFIG_TEMPLATE.read_text()).substitute(
            host=s.host,
            kafka_port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=self.data_dir,
            extra_listeners="",
            extra_advertised_listeners="",
            extra_properties="",
        )
        self.process.dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(text)
        return self.config_file

    def _java(self, main_class: str, *args: str) -> list[str]:
        libs = kafka_libs(self.settings.cache_dir)
        return [
            java_binary(self.settings.java_home),
            *self.settings.kafka_heap.split(),
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-Djava.awt.headless=true",
            "-cp",
            f"{libs}/*",
            main_class,
            *args,
        ]

    def format_storage(self) -> None:
        """Format KRaft storage once; a formatted directory is left alone."""
        if (self.data_dir / "meta.properties").exists():
            return
        cluster_id = _kafka_cluster_id()
        cmd = self._java("kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
                         "-c", str(self.config_file), "--ignore-formatted")
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            # Older 4.x brokers with controller.quorum.voters reject --standalone.
            cmd = [c for c in cmd if c != "--standalone"]
            result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        if self.process.is_running():
            return
        self.render_config()
        self.format_storage()
        self.process.start(self._java("kafka.Kafka", str(self.config_file)))

    def is_ready(self) -> bool:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(
            bootstrap_servers=self.settings.kafka_bootstrap,
            request_timeout_ms=3000,
        )
        try:
            cluster = admin.describe_cluster()
            return bool(cluster.get("brokers"))
        finally:
            admin.close()


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (22 chars)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
