"""Serve a registry on /metrics and register it with the local Prometheus.

Servers bind 127.0.0.1 unless configured otherwise; port 0 picks a free port.
Registration writes a file_sd target file into the stack's targets directory,
labelled with the service name, so Prometheus scrapes ports chosen at run time.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


@dataclass
class MetricsEndpoint:
    service: str
    host: str
    port: int
    server: WSGIServer
    thread: threading.Thread
    target_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        if self.target_file is not None:
            self.target_file.unlink(missing_ok=True)
        self.server.shutdown()
        self.server.server_close()


def register_scrape_target(
    targets_dir: Path, service: str, host: str, port: int, labels: dict[str, str] | None = None
) -> Path:
    """Write ``<service>-<port>.json`` (file_sd format) so Prometheus scrapes it.

    ``labels`` are added by Prometheus to every series of the target (e.g. a
    ``pipeline`` label that keeps two runs' series apart in one Prometheus).
    """
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{service}-{port}.json"
    tmp = path.with_suffix(".tmp")
    target_labels = {**(labels or {}), "service": service}
    tmp.write_text(json.dumps([{"targets": [f"{host}:{port}"], "labels": target_labels}]))
    tmp.replace(path)  # atomic: Prometheus never reads half a file
    return path


def serve_metrics(
    registry: CollectorRegistry,
    service: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    targets_dir: Path | None = None,
    labels: dict[str, str] | None = None,
) -> MetricsEndpoint:
    """Start the /metrics HTTP server in a daemon thread; register it when targets_dir is given."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound_port = server.server_address[1]
    endpoint = MetricsEndpoint(service, host, bound_port, server, thread)
    if targets_dir is not None:
        endpoint.target_file = register_scrape_target(
            targets_dir, service, host, bound_port, labels
        )
    log.info("%s metrics on %s", service, endpoint.url)
    return endpoint
