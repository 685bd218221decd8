"""Start the article sink with its store, /metrics endpoint and signal handling."""

from __future__ import annotations

import logging
import signal

from prometheus_client import CollectorRegistry

from pipeline.articles.drift import DriftMonitor
from pipeline.articles.sink import ArticleSink
from pipeline.articles.store import ArticleStore
from pipeline.metrics.definitions import ArticleSinkMetrics, DriftMetrics
from pipeline.metrics.server import serve_metrics
from pipeline.settings import ArticleStoreSettings, KafkaSettings, StackSettings

log = logging.getLogger(__name__)


def serve(
    settings: ArticleStoreSettings,
    *,
    kafka: KafkaSettings | None = None,
    install_signal_handlers: bool = True,
) -> None:
    """Run one sink replica until SIGTERM/SIGINT."""
    registry = CollectorRegistry()
    metrics = ArticleSinkMetrics(registry)
    store = ArticleStore(settings.database_url.get_secret_value())
    drift = DriftMonitor.for_current_model(settings, DriftMetrics(registry))
    sink = ArticleSink(
        store,
        kafka=kafka or KafkaSettings(),
        settings=settings,
        metrics=metrics,
        on_batch=drift.observe if drift else None,
        on_idle=drift.tick if drift else None,
    )
    endpoint = serve_metrics(
        registry,
        "articles-sink",
        host=settings.metrics_host,
        port=settings.metrics_port,
        targets_dir=StackSettings().prometheus_targets_dir if settings.register_target else None,
        labels={"pipeline": settings.pipeline} if settings.pipeline else None,
    )
    if install_signal_handlers:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: sink.stop())
    try:
        sink.run()
    finally:
        endpoint.close()
        store.close()
