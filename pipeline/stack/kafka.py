"""The local single-node KRaft Kafka broker.

A PLAINTEXT listener on ``kafka_port`` always; with ``kafka_sasl_port`` set, a
second SASL_PLAINTEXT listener that accepts PLAIN and SCRAM-SHA-256 for one user
(``kafka_sasl_username``). Its password comes from the settings (environment or
secrets directory) or is generated once into the run directory; it never enters
``server.properties``: the broker reads it through Kafka's FileConfigProvider
from a 0600 file beside it, and SCRAM credentials are upserted over the admin API.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import uuid
from pathlib import Path
from string import Template

from pydantic import SecretStr

from pipeline.settings import REPO_ROOT, KafkaSettings, StackSettings
from pipeline.stack.install import java_binary, kafka_libs
from pipeline.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)

CONFIG_TEMPLATE = REPO_ROOT / "deploy" / "kafka" / "server.properties"
LOG4J_CONFIG = REPO_ROOT / "deploy" / "kafka" / "log4j2.yaml"

SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256")
# The password is substituted into a JAAS line (quoted) and a .properties file:
# quotes, backslashes, whitespace and controls would break either.
_SASL_PASSWORD_RE = re.compile(r"^[!#-\[\]-~]{12,256}$")


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

    @property
    def sasl_dir(self) -> Path:
        return self.process.dir / "sasl"

    @property
    def sasl_secrets_file(self) -> Path:
        """``password=...`` read by the broker's FileConfigProvider (mode 0600)."""
        return self.sasl_dir / "broker-secrets.properties"

    def sasl_password(self) -> SecretStr:
        """The SASL user's password: from the settings, else generated once (mode 0600)."""
        if self.settings.kafka_sasl_password is not None:
            password = self.settings.kafka_sasl_password
        else:
            generated = self.sasl_dir / "password"
            if not generated.exists():
                _write_private(generated, secrets.token_urlsafe(24))
            password = SecretStr(generated.read_text(encoding="utf-8").strip())
        if not _SASL_PASSWORD_RE.match(password.get_secret_value()):
            raise StackError(
                "kafka: the SASL password (FINSENTRY_STACK_KAFKA_SASL_PASSWORD) must be 12-256 "
                "printable ASCII characters without spaces, quotes or backslashes"
            )
        return password

    def sasl_client_settings(self, **overrides) -> KafkaSettings:
        """KafkaSettings for the SASL listener (SCRAM-SHA-256 unless overridden)."""
        s = self.settings
        if not s.kafka_sasl_port:
            raise StackError("kafka: no SASL listener configured (FINSENTRY_STACK_KAFKA_SASL_PORT)")
        values = {
            "bootstrap_servers": s.kafka_sasl_bootstrap,
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": s.kafka_sasl_username,
            "sasl_password": self.sasl_password(),
            **overrides,
        }
        return KafkaSettings(**values)

    def _sasl_config(self) -> dict[str, str]:
        s = self.settings
        if not s.kafka_sasl_port:
            return {"extra_listeners": "", "extra_advertised_listeners": "", "extra_properties": ""}
        password = self.sasl_password().get_secret_value()
        _write_private(self.sasl_secrets_file, f"password={password}\n")
        listener = f",SASL_PLAINTEXT://{s.host}:{s.kafka_sasl_port}"
        secret_ref = f"${{file:{self.sasl_secrets_file}:password}}"
        prefix = "listener.name.sasl_plaintext"
        properties = "\n".join([
            "# SASL listener: the password is resolved from a 0600 file, never written here.",
            "config.providers=file",
            "config.providers.file.class=org.apache.kafka.common.config.provider.FileConfigProvider",
            f"sasl.enabled.mechanisms={','.join(SASL_MECHANISMS)}",
            f"{prefix}.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule"
            f' required user_{s.kafka_sasl_username}="{secret_ref}";',
            f"{prefix}.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        ])
        return {
            "extra_listeners": listener,
            "extra_advertised_listeners": listener,
            "extra_properties": properties,
        }

    def render_config(self) -> Path:
        s = self.settings
        self.process.dir.mkdir(parents=True, exist_ok=True)
        text = Template(CONFIG_TEMPLATE.read_text()).substitute(
            host=s.host,
            kafka_port=s.kafka_port,
            controller_port=s.kafka_controller_port,
            data_dir=self.data_dir,
            **self._sasl_config(),
        )
        self.config_file.write_text(text)
        return self.config_file

    def configure_users(self) -> None:
        """Upsert the SASL user's SCRAM credentials (idempotent; the broker must be ready).

        PLAIN needs nothing here: its user list is in the listener's JAAS config.
        Goes through the PLAINTEXT listener, which only loopback clients reach.
        """
        if not self.settings.kafka_sasl_port:
            return
        from kafka import KafkaAdminClient
        from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap,
                                 request_timeout_ms=10_000)
        try:
            user = self.settings.kafka_sasl_username
            upsert = UserScramCredentialUpsertion(
                user, ScramMechanism.SCRAM_SHA_256, self.sasl_password().get_secret_value(),
                iterations=8192,
            )
            errors = admin.alter_user_scram_credentials([upsert])
        finally:
            admin.close()
        if errors.get(user):
            raise StackError(f"kafka: cannot set SCRAM credentials for {user!r}: {errors[user]}")

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


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, creating it with 0600 (no world-readable window)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def _kafka_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, URL-safe base64 without padding (22 chars).

    Never one that starts with ``-``: kafka-storage would read it as an option
    (``-t -x...``: "expected one argument"), which failed one start in 64. Kafka's
    own ``Uuid.randomUuid`` draws again for the same reason.
    """
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
