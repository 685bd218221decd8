"""End to end: a shortened demo through the real stack, and a calm control stream.

Everything is real: Kafka, the Flink job, the classifier with the shipped
model, the exporter, Prometheus rules, Alertmanager and the notifier, each
stage in its own process exactly as `finsentry demo` runs them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.demo.observe import prometheus_query
from pipeline.demo.run import SPIKE_ALERT, DemoOptions, run_demo
from pipeline.ingest.demo import DemoSpec, build_demo_stream, write_demo_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The 15m windows are shown once they lie inside the data (15 event minutes = 90 s at
# 10x); the rules then want 6 baseline samples (5 s apart) ending 1 minute ago: the
# spike must come at least ~190 s of wall time into the replay.
SPEEDUP = 10.0


def _stream(tmp_path: Path, name: str, *, with_spike: bool) -> Path:
    spec = DemoSpec(seed=11, start=datetime(2026, 1, 5, 9, 0, tzinfo=UTC), duration_minutes=40.0,
                    spike_start_minute=33.0, spike_minutes=5.0, spike_per_minute=8.0)
    rows, truth = build_demo_stream(spec)
    if not with_spike:
        rows = [row for row in rows if not row.get("spike")]
        truth = {**truth, "articles": len(rows)}
    path = tmp_path / f"{name}.jsonl"
    write_demo_stream(rows, truth, path)
    return path


def test_spike_is_delivered_and_calm_stream_stays_silent(stack, tmp_path):
    stream = _stream(tmp_path, "spiked", with_spike=True)
    spiked = run_demo(DemoOptions(stream=stream, speedup=SPEEDUP,
                                  timeout_seconds=600, report_dir=tmp_path / "report-spiked"))
    keys = spiked.spike_keys()  # the topic and the ticker its articles carry
    notifications = spiked.spike_notifications()
    assert notifications, f"no {SPIKE_ALERT} for {keys} was delivered; fired: {spiked.alerts_fired}"
    alert = next(a for n in notifications for a in n["alerts"] if a["labels"].get("key") in keys)
    assert alert["labels"]["dimension"] in {"topic", "ticker"}
    # Every alert says why: the notification lists the spike's own stories (the article
    # store, read in the alert's event-time window), each with the words behind it.
    rows = [json.loads(line) for line in stream.read_text().splitlines() if line.strip()]
    spike_titles = {row["text"].split("\n")[0].strip() for row in rows if row.get("spike")}
    listed = [article for n in notifications for fired in n["alerts"] if fired["labels"].get("key") in keys
              for article in fired.get("articles", [])]
    assert listed, json.dumps(notifications, indent=1)[:2000]
    assert {a["title"] for a in listed} & spike_titles, [a["title"] for a in listed]
    assert all(a["sentiment_score"] < 0 for a in listed)
    assert any(a["phrases"] for a in listed)
    assert spiked.counts.raw == spiked.truth["articles"]
    assert spiked.counts.agree, spiked.counts
    assert spiked.counts.closed_all_window_articles > 0
    assert any(p.suffix == ".png" for p in spiked.report_files)

    # Calm control: its window series carry its own pipeline label, so its baseline
    # starts clean; nothing may page.
    calm = run_demo(DemoOptions(stream=_stream(tmp_path, "calm", with_spike=False), speedup=SPEEDUP,
                                timeout_seconds=600, expect_alert=False, report_dir=tmp_path / "report-calm"))
    assert not calm.spike_notifications(), json.dumps(calm.notifications, indent=1)[:2000]
    assert not calm.alerts_fired, calm.alerts_fired
    # Neither demo stream leaves the training mix: ModelDrift never even pending.
    for run in (spiked, calm):
        drift = prometheus_query(stack.settings.prometheus_url,
                                 f'max_over_time(ALERTS{{alertname="ModelDrift",pipeline="{run.run_id}"}}[30m])')
        assert not drift, drift
    assert calm.counts.agree, calm.counts
