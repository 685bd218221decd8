"""Process wiring for ``finsentry crawl`` and ``finsentry replay``: Kafka, metrics, signals."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry

from pipeline.settings import CrawlerSettings, KafkaSettings, ReplaySettings, StackSettings

log = logging.getLogger(__name__)


@contextmanager
def _metrics_endpoint(registry, service: str, host: str, port: int, register: bool):
    from pipeline.metrics.server import serve_metrics

    targets = StackSettings().prometheus_targets_dir if register else None
    endpoint = serve_metrics(registry, service, host=host, port=port, targets_dir=targets)
    try:
        yield endpoint
    finally:
        endpoint.close()


def run_crawler(
    feeds: Path,
    *,
    settings: CrawlerSettings,
    kafka: KafkaSettings,
    once: bool = False,
    companies: Path | None = None,
) -> list:
    """Crawl until SIGINT/SIGTERM (or one poll of every source with ``once``)."""
    from pipeline.ingest.crawler import Crawler
    from pipeline.ingest.sink import KafkaSink
    from pipeline.ingest.sources import load_sources
    from pipeline.ingest.tickers import TickerTagger, load_companies
    from pipeline.kafka_io import ensure_topics
    from pipeline.metrics.definitions import CrawlerMetrics

    sources = load_sources(feeds, settings.default_poll_interval_seconds)
    if not sources:
        log.warning("crawl: %s lists no enabled sources", feeds)
        return []
    tagger = TickerTagger(load_companies(companies)) if companies else TickerTagger()
    ensure_topics(kafka, [kafka.topic_raw])
    registry = CollectorRegistry()
    metrics = CrawlerMetrics(registry)
    sink = KafkaSink(kafka)

    async def main() -> list:
        async with Crawler(settings, sources, sink, metrics, tagger=tagger) as crawler:
            if once:
                return await crawler.run_once()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            log.info("crawling %d sources into %s; Ctrl-C stops", len(sources), kafka.topic_raw)
            await crawler.run_forever(stop)
            return []

    try:
        with _metrics_endpoint(
            registry,
            "crawler",
            settings.metrics_host,
            settings.metrics_port,
            settings.register_target,
        ):
            return asyncio.run(main())
    finally:
        sink.close()


def run_replay(
    path: Path,
    options,
    *,
    settings: ReplaySettings,
    kafka: KafkaSettings,
    fmt: str | None = None,
    truth: Path | None = None,
    truth_out: Path | None = None,
    progress: Callable[[int], None] | None = None,
    total: int | None = None,
):
    """Replay one file into ``kafka.topic_raw``; writes the re-based ground truth if asked."""
    from pipeline.ingest.demo import rebase_truth
    from pipeline.ingest.replay import Replayer, read_rows
    from pipeline.ingest.sink import KafkaSink
    from pipeline.kafka_io import ensure_topics
    from pipeline.metrics.definitions import ReplayMetrics

    if truth_out is not None and truth is None:
        raise FileNotFoundError(f"replay: --truth-out needs the ground truth of {path} (--truth)")
    truth_data = json.loads(truth.read_text(encoding="utf-8")) if truth is not None else None

    def write_truth(offset) -> None:
        # written before the first record goes out, atomically, so a watcher can read it at once
        moved = (
            rebase_truth(truth_data, offset, options.id_salt) if offset is not None else truth_data
        )
        tmp = truth_out.with_name(truth_out.name + ".tmp")
        tmp.write_text(json.dumps(moved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(truth_out)

    ensure_topics(kafka, [kafka.topic_raw])
    registry = CollectorRegistry()
    sink = KafkaSink(kafka)
    endpoint = _metrics_endpoint(
        registry, "replay", settings.metrics_host, settings.metrics_port, settings.register_target
    )
    try:
        with endpoint:
            replayer = Replayer(sink, options, ReplayMetrics(registry))
            report = replayer.run(
                read_rows(path, fmt),
                total=total,
                progress=progress,
                on_offset=write_truth if truth_out is not None else None,
            )
    finally:
        sink.close()
    if truth_out is not None and report.offset is None:
        write_truth(None)  # keep mode (or no times): the file's own times are the replay's
    return report
