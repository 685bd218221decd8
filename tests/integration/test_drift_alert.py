"""ModelDrift end to end: a replay whose mix has left the training data raises it.

One topic's held-out headlines (Macro, ~220) are replayed through the real
classifier (the shipped model) and the article sink; the sink's drift gauges are
scraped by the local Prometheus, whose rule (deploy/prometheus/rules/drift.yml:
PSI > 0.25 over at least 200 articles, for 1m) must fire for this run's
``pipeline``. The other half of the contract, that the normal demo stream does
not raise it, is asserted by the e2e test (tests/e2e/test_demo.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.demo.observe import prometheus_query
from pipeline.demo.services import FINSENTRY
from pipeline.ingest.demo import load_pools, resolve_data_dir
from pipeline.messages import format_time
from tests.chaos.harness import ChaosPipeline, new_run, wait_until

TOPIC = "Macro"
DRIFT_ALERT = "ModelDrift"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def write_one_topic_stream(path: Path, run_id: str, topic: str) -> int:
    """Every held-out headline of ``topic``, two seconds apart; returns how many."""
    texts = [t.text for t in load_pools(resolve_data_dir()).topic if t.topic == topic]
    start = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as out:
        for i, text in enumerate(texts):
            row = {"id": f"{run_id}-{i:04d}", "published_at": format_time(start + timedelta(seconds=2 * i)),
                   "source": "drift-test", "text": text}
            out.write(json.dumps(row) + "\n")
    return len(texts)


def test_a_one_topic_replay_raises_model_drift_for_its_pipeline(stack, unique):
    run_id, run_dir = new_run(stack, "drift", unique, group="drift")
    stream = run_dir / "stream.jsonl"
    articles = write_one_topic_stream(stream, run_id, TOPIC)
    assert articles >= 200, f"only {articles} held-out {TOPIC} headlines"

    pipe = ChaosPipeline(stack, run_id, run_dir)
    classify, sink = pipe.processes["classify"], pipe.processes["articles-sink"]
    alert = f'ALERTS{{alertname="{DRIFT_ALERT}",pipeline="{run_id}",alertstate="firing"}}'
    try:
        classify.start(pipe.command("classify"), env=pipe.env())
        sink.start([*FINSENTRY, "articles", "sink"], env=pipe.env())
        pipe.wait_ready(["classify"])
        pipe.start_replay(stream, 20.0)

        def firing() -> bool:
            assert classify.is_running(), classify.log_tail(40)
            assert sink.is_running(), sink.log_tail(40)
            return bool(prometheus_query(stack.settings.prometheus_url, alert))

        wait_until(firing, 300, f"{DRIFT_ALERT} to fire for {run_id}")
        heads = {s["metric"]["head"] for s in prometheus_query(stack.settings.prometheus_url, alert)}
        psi = prometheus_query(stack.settings.prometheus_url, f'finsentry_drift_psi{{pipeline="{run_id}"}}')
    finally:
        pipe.replay.stop(timeout_seconds=10)
        classify.stop(timeout_seconds=30)
        sink.stop(timeout_seconds=30)
        pipe.progress.close()
    pipe.delete_topics()
    values = {s["metric"]["head"]: round(float(s["value"][1]), 2) for s in psi}
    print(f"{DRIFT_ALERT} fired for {sorted(heads)}; PSI {values}")
    assert "topic" in heads
