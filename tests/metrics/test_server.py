"""file_sd registration: extra target labels (pipeline) and the service label."""

from __future__ import annotations

import json

from pipeline.metrics.server import register_scrape_target


def test_target_file_carries_extra_labels(tmp_path):
    path = register_scrape_target(tmp_path, "exporter", "127.0.0.1", 8002, {"pipeline": "demo-1"})
    assert path.name == "exporter-8002.json"
    assert json.loads(path.read_text()) == [
        {"targets": ["127.0.0.1:8002"], "labels": {"pipeline": "demo-1", "service": "exporter"}}
    ]
    path = register_scrape_target(tmp_path, "exporter", "127.0.0.1", 8003)
    assert json.loads(path.read_text())[0]["labels"] == {"service": "exporter"}
