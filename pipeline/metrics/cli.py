"""``finsentry export``: sentiment.windows -> /metrics for Prometheus."""

from __future__ import annotations

import signal
import threading

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export(
        port: int = typer.Option(
            None, help="Port of /metrics (default FINSENTRY_EXPORTER_METRICS_PORT, 8002; 0 = any)."
        ),
        host: str = typer.Option(
            None, help="Address to bind (default FINSENTRY_EXPORTER_METRICS_HOST, 127.0.0.1)."
        ),
        topic: str = typer.Option(
            None, help="Windows topic (default FINSENTRY_KAFKA_TOPIC_WINDOWS, sentiment.windows)."
        ),
        top_n_tickers: int = typer.Option(
            None, help="Tickers with series (default FINSENTRY_EXPORTER_TOP_N_TICKERS, 50)."
        ),
        pipeline: str = typer.Option(
            None,
            help="Label every series pipeline=NAME (FINSENTRY_EXPORTER_PIPELINE), e.g. per run.",
        ),
        register_target: bool = typer.Option(
            None,
            "--register/--no-register",
            help="Write a file_sd target so the local stack's Prometheus scrapes the exporter.",
        ),
    ) -> None:
        """Expose the latest closed window per dimension, key and window length as gauges.

        Reads every partition of sentiment.windows with isolation_level=read_committed
        (the Flink sink is transactional); on start re-reads the last
        FINSENTRY_EXPORTER_STARTUP_LOOKBACK_SECONDS. Gauges: finsentry_window_articles,
        finsentry_window_negative_articles, finsentry_window_negative_ratio,
        finsentry_window_mean_sentiment, finsentry_window_end_timestamp_seconds
        {dimension, key, window}. Stops cleanly on Ctrl-C / SIGTERM.
        """
        from pipeline.metrics.exporter import run_exporter
        from pipeline.settings import ExporterSettings, KafkaSettings

        overrides = {
            k: v
            for k, v in {
                "metrics_port": port,
                "metrics_host": host,
                "top_n_tickers": top_n_tickers,
                "register_target": register_target,
                "pipeline": pipeline,
            }.items()
            if v is not None
        }
        settings = ExporterSettings(**overrides)
        kafka = KafkaSettings(**({"topic_windows": topic} if topic else {}))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            run_exporter(kafka, settings, stop=stop)
        except KeyboardInterrupt:
            stop.set()
