"""The ingest metric families, exactly as other stages' alert rules and dashboards name them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.metrics.definitions import CrawlerMetrics, ReplayMetrics


def families(registry: CollectorRegistry) -> dict[str, str]:
    text = generate_latest(registry).decode()
    return {
        line.split()[2]: line.split()[3]
        for line in text.splitlines()
        if line.startswith("# TYPE") and not line.split()[2].endswith("_created")
    }


def test_crawler_metric_names():
    assert families(_crawler()) == {
        "finsentry_ingest_articles_emitted_total": "counter",
        "finsentry_ingest_emit_failures_total": "counter",
        "finsentry_crawler_fetches_total": "counter",
        "finsentry_crawler_fetch_duration_seconds": "histogram",
        "finsentry_crawler_duplicates_total": "counter",
        "finsentry_crawler_errors_total": "counter",
        "finsentry_crawler_refused_total": "counter",
        "finsentry_crawler_items_skipped_total": "counter",
        "finsentry_crawler_dates_replaced_total": "counter",
        "finsentry_crawler_last_success_timestamp_seconds": "gauge",
    }


def _crawler() -> CollectorRegistry:
    registry = CollectorRegistry()
    metrics = CrawlerMetrics(registry)
    metrics.articles_emitted.labels(source="s").inc()
    text = generate_latest(registry).decode()
    assert 'finsentry_ingest_articles_emitted_total{source="s"} 1.0' in text
    return registry


def test_replay_metric_names():
    registry = CollectorRegistry()
    ReplayMetrics(registry)
    assert families(registry) == {
        "finsentry_ingest_articles_emitted_total": "counter",
        "finsentry_ingest_emit_failures_total": "counter",
        "finsentry_replay_rows_skipped_total": "counter",
        "finsentry_replay_progress_ratio": "gauge",
    }
