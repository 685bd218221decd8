"""``finsentry demo`` and ``finsentry run``."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

console = Console()


class _ProgressTable:
    """Counts and per-second rates of every stage, redrawn in place."""

    ROWS = (("raw", "ingested (news.raw)"), ("scored", "scored (news.scored)"),
            ("dead_lettered", "dead-lettered (news.dlq)"), ("windows", "windows (sentiment.windows)"),
            ("alerts_pending", "spike alerts pending"), ("alerts_firing", "spike alerts firing"),
            ("notifications", "notifications delivered"))

    def __init__(self) -> None:
        self.last: dict = {}
        self.last_at = time.monotonic()
        self.rates: dict[str, float] = {}

    def update(self, progress: dict) -> Table:
        now = time.monotonic()
        elapsed = max(now - self.last_at, 1e-6)
        for key, _ in self.ROWS[:4]:
            self.rates[key] = (progress[key] - self.last.get(key, 0)) / elapsed
        self.last, self.last_at = progress, now
        table = Table("stage", "count", "rate /s", title="finsentry demo", min_width=60)
        for key, label in self.ROWS:
            rate = f"{self.rates[key]:.1f}" if key in self.rates else ""
            table.add_row(label, str(progress[key]), rate)
        table.caption = "replay finished" if progress["replay_done"] else "replaying..."
        return table


def register(app: typer.Typer) -> None:
    _register_run(app)

    @app.command("demo")
    def demo(
        keep: bool = typer.Option(False, "--keep", help="Leave everything running and print the addresses."),
        speedup: float = typer.Option(
            10.0, help="Event time runs this many times faster than wall time (the alert rules "
            "need about 150 s of wall-clock history before they judge a key)."
        ),
        stream: Path = typer.Option(None, help="Replay this stream (default: the bundled demo stream)."),
        report_dir: Path = typer.Option(None, help="Where to write the chart and summary "
                                        "(default: the run directory)."),
        timeout_seconds: float = typer.Option(900.0, help="Give up after this long."),
    ) -> None:
        """The whole pipeline end to end on the bundled model, with a negative spike.

        Starts the local stack, the Flink job, the classifier, the exporter and the
        notifier, replays the bundled demo stream time-compressed (a calm market,
        then a negative spike on one topic), shows every stage's progress, prints
        the alert that the spike raises when it is delivered, checks that the
        counts agree, and writes a chart and a summary. `finsentry stack down`
        stops the servers afterwards.
        """
        import logging
        import signal

        from rich.logging import RichHandler

        from pipeline.demo.run import DEFAULT_STREAM, DemoOptions, run_demo

        # SIGTERM unwinds like Ctrl-C, so the stages this run started are stopped.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        logging.getLogger("kafka").setLevel(logging.ERROR)
        # Log lines print above the live table instead of tearing it.
        root = logging.getLogger()
        root.handlers[:] = [RichHandler(console=console, show_path=False, markup=False)]

        options = DemoOptions(stream=stream or DEFAULT_STREAM, speedup=speedup, keep=keep,
                              report_dir=report_dir, timeout_seconds=timeout_seconds)
        progress = _ProgressTable()
        console.print("starting the stack and the pipeline (the first run installs what is missing)...")
        with Live(console=console, refresh_per_second=2) as live:
            result = run_demo(options, on_progress=lambda p: live.update(progress.update(p)))
        _print_result(result, keep)
        ok = bool(result.spike_notifications()) and result.counts.agree
        raise typer.Exit(0 if ok else 1)


def _print_result(result, keep: bool) -> None:
    c = result.counts
    for notification in result.spike_notifications()[:1]:
        console.rule("alert delivered")
        console.print(notification.get("text", ""), markup=False, highlight=False)
    console.rule("summary")
    if result.spike_notifications():
        console.print(f"spike detected {result.detection_delay_seconds:.0f} s (wall) after its first "
                      f"article was sent")
    else:
        console.print("[red]no spike alert was delivered[/red]")
    console.print(f"news.raw {c.raw} = scored {c.scored_distinct} + dead-lettered {c.dead_lettered}; "
                  f"closed 'all' windows count {c.closed_all_window_articles} of "
                  f"{c.scored_in_closed_windows} distinct articles -> "
                  f"{'counts agree' if c.agree else '[red]counts DO NOT agree[/red]'}")
    for path in result.report_files:
        console.print(f"report: {path}")
    if keep:
        from pipeline.settings import StackSettings

        s = StackSettings()
        console.print(f"still running: Prometheus {s.prometheus_url}  Alertmanager {s.alertmanager_url}  "
                      "classifier http://127.0.0.1:8001/metrics  exporter http://127.0.0.1:8002/metrics  "
                      "notifier http://127.0.0.1:8003/alertmanager; stop with `finsentry stack down` "
                      f"and the stages' PIDs in {result.run_dir}")


def _register_run(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        feeds: Path = typer.Option(..., "--feeds", exists=True, dir_okay=False,
                                   help="YAML file of feeds (see docs/ingest.md)."),
    ) -> None:
        """The same pipeline as the demo, on live feeds, until Ctrl-C.

        Starts the local stack and every stage on the configured topics
        (FINSENTRY_KAFKA_TOPIC_*), points Alertmanager at the notifier, runs the
        crawler on FEEDS and shows progress. Configure delivery channels with
        FINSENTRY_NOTIFIER_* (see `finsentry notify --help`).
        """
        import os
        import signal
        from datetime import UTC, datetime

        from pipeline.demo.observe import topic_offsets
        from pipeline.demo.services import FINSENTRY, PipelineServices
        from pipeline.kafka_io import ensure_topics
        from pipeline.settings import KafkaSettings
        from pipeline.stack import LocalStack
        from pipeline.stack.process import ManagedProcess

        stack = LocalStack()
        stack.up()
        kafka = KafkaSettings()
        ensure_topics(kafka)
        run_dir = stack.settings.run_dir / "demo" / f"live-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        services = PipelineServices(run_dir, kafka, stack.settings)
        crawler = ManagedProcess("crawl", run_dir)
        stop = []
        signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
        try:
            services.start()
            stack.alertmanager.reload(services.notifier_url)
            services.wait_ready()
            crawler.start([*FINSENTRY, "crawl", "--feeds", str(feeds.resolve())],
                          env={**os.environ, **services.env()})
            console.print(f"running; logs in {run_dir}; Ctrl-C stops the pipeline (the stack stays up)")
            progress = _ProgressTable()
            with Live(console=console, refresh_per_second=1) as live:
                while not stop:
                    services.check_alive()
                    counts = {key: 0 for key, _ in _ProgressTable.ROWS}
                    counts.update(raw=topic_offsets(kafka, kafka.topic_raw),
                                  scored=topic_offsets(kafka, kafka.topic_scored),
                                  dead_lettered=topic_offsets(kafka, kafka.topic_dlq),
                                  replay_done=not crawler.is_running())
                    live.update(progress.update(counts))
                    time.sleep(2)
        except KeyboardInterrupt:
            pass
        finally:
            crawler.stop()
            services.stop()
