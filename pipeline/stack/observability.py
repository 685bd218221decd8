"""The local Prometheus and Alertmanager servers (Debian packages, configs from deploy/)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from string import Template

import httpx

from pipeline.settings import REPO_ROOT, StackSettings
from pipeline.stack.process import ManagedProcess, StackError

log = logging.getLogger(__name__)

PROMETHEUS_TEMPLATE = REPO_ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES_DIR = REPO_ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER_TEMPLATE = REPO_ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def _http_ready(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code == 200


class PrometheusServer:
    name = "prometheus"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.run_dir)

    @property
    def config_file(self) -> Path:
        return self.process.dir / "prometheus.yml"

    def render_config(self) -> Path:
        s = self.settings
        s.prometheus_targets_dir.mkdir(parents=True, exist_ok=True)
        text = Template(PROMETHEUS_TEMPLATE.read_text()).substitute(
            scrape_interval=f"{s.scrape_interval_seconds}s",
            evaluation_interval=f"{s.evaluation_interval_seconds}s",
            rules_glob=str(RULES_DIR / "*.yml"),
            targets_dir=str(s.prometheus_targets_dir),
            alertmanager=f"{s.host}:{s.alertmanager_port}",
            prometheus=f"{s.host}:{s.prometheus_port}",
        )
        self.config_file.write_text(text)
        return self.config_file

    def start(self) -> None:
        if self.process.is_running():
            # Started earlier, perhaps from another checkout or before the rules were
            # edited: it evaluates the rules it loaded then. Point it at this checkout's.
            if self.is_ready():
                self.reload()
            return
        binary = shutil.which("prometheus")
        if binary is None:
            raise StackError("prometheus is not installed (make setup installs the Debian package)")
        self.process.dir.mkdir(parents=True, exist_ok=True)
        self.render_config()
        self.process.start([
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.process.dir / 'data'}",
            f"--web.listen-address={self.settings.host}:{self.settings.prometheus_port}",
            f"--web.external-url={self.settings.prometheus_url}",
            "--web.enable-lifecycle",
            "--web.enable-admin-api",
            "--storage.tsdb.retention.time=7d",
        ])

    def is_ready(self) -> bool:
        return _http_ready(f"{self.settings.prometheus_url}/-/ready")

    def reload(self) -> None:
        self.render_config()
        httpx.post(f"{self.settings.prometheus_url}/-/reload", timeout=10.0).raise_for_status()


class AlertmanagerServer:
    name = "alertmanager"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.process = ManagedProcess(self.name, settings.run_dir)

    @property
    def config_file(self) -> Path:
        return self.process.dir / "alertmanager.yml"

    @property
    def receiver_file(self) -> Path:
        """Remembers the webhook URL last configured, so a restart keeps it."""
        return self.process.dir / "notifier_url"

    def notifier_url(self) -> str:
        if self.receiver_file.exists():
            return self.receiver_file.read_text().strip()
        return self.settings.notifier_url

    def render_config(self, notifier_url: str | None = None) -> Path:
        self.process.dir.mkdir(parents=True, exist_ok=True)
        if notifier_url is not None:
            self.receiver_file.write_text(notifier_url)
        text = Template(ALERTMANAGER_TEMPLATE.read_text()).substitute(
            notifier_url=self.notifier_url(),
            prometheus_url=self.settings.prometheus_url,
        )
        self.config_file.write_text(text)
        return self.config_file

    def start(self) -> None:
        if self.process.is_running():
            return
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise StackError("alertmanager is not installed (make setup installs the Debian package)")
        self.render_config()
        self.process.start([
            binary,
            f"--config.file={self.config_file}",
            f"--storage.path={self.process.dir / 'data'}",
            f"--web.listen-address={self.settings.host}:{self.settings.alertmanager_port}",
            f"--web.external-url={self.settings.alertmanager_url}",
            "--cluster.listen-address=",
        ])

    def is_ready(self) -> bool:
        return _http_ready(f"{self.settings.alertmanager_url}/-/ready")

    def reload(self, notifier_url: str | None = None) -> None:
        """Point Alertmanager's webhook receivers at ``notifier_url`` and reload."""
        self.render_config(notifier_url)
        response = httpx.post(f"{self.settings.alertmanager_url}/-/reload", timeout=10.0)
        if response.status_code != 200:
            raise StackError(f"alertmanager reload failed: {response.status_code} {response.text}")
