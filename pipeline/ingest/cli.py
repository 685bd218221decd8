"""``finsentry crawl``, ``finsentry replay`` and ``finsentry demo-stream``."""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

import typer


def _friendly(command):
    """Operator mistakes (bad feeds file, bad options, missing data) print one line, exit 2."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        from pipeline.ingest.canonical import InvalidUrl
        from pipeline.ingest.demo import DemoDataError
        from pipeline.ingest.replay import ReplayError
        from pipeline.ingest.sources import SourcesError
        from pipeline.ingest.tickers import CompanyTableError

        try:
            return command(*args, **kwargs)
        except (
            SourcesError,
            ReplayError,
            DemoDataError,
            CompanyTableError,
            InvalidUrl,
            FileNotFoundError,
        ) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc

    return run


def register(app: typer.Typer) -> None:
    @app.command("crawl")
    @_friendly
    def crawl(
        feeds: Path = typer.Option(
            ..., "--feeds", exists=True, dir_okay=False, help="Sources YAML file."
        ),
        once: bool = typer.Option(False, help="Poll every source once and exit."),
        companies: Path = typer.Option(
            None,
            exists=True,
            dir_okay=False,
            help="Company name -> ticker CSV (default: bundled table).",
        ),
        state_url: str = typer.Option(
            None, help="SQLAlchemy URL of the crawler state (default: settings)."
        ),
        metrics_port: int = typer.Option(None, help="Port of /metrics (0: any free port)."),
    ) -> None:
        """Crawl RSS/Atom feeds into news.raw, politely, until Ctrl-C / SIGTERM.

        Each source in the YAML file has a name, a feed URL, a poll interval and
        whether to fetch the article page (docs/ingest.md). robots.txt, per-host
        rate limits, conditional GET and size caps apply to every request; links
        that resolve to loopback, private, link-local or metadata addresses are
        refused. Stories already emitted (state in SQLite) are never emitted
        again; near-duplicates of earlier stories carry duplicate_of. Process
        knobs: FINSENTRY_CRAWLER_* (e.g. FINSENTRY_CRAWLER_PER_HOST_INTERVAL_SECONDS).
        """
        from pipeline.ingest.service import run_crawler
        from pipeline.settings import CrawlerSettings, KafkaSettings

        overrides = {
            k: v
            for k, v in {"state_url": state_url, "metrics_port": metrics_port}.items()
            if v is not None
        }
        results = run_crawler(
            feeds,
            settings=CrawlerSettings(**overrides),
            kafka=KafkaSettings(),
            once=once,
            companies=companies,
        )
        for result in results:
            typer.echo(
                f"{result.source}: {result.status}, {result.items} items, "
                f"{len(result.emitted)} emitted "
                f"({result.near_duplicates} near-duplicates), {result.already_seen} already seen"
            )

    @app.command("replay")
    @_friendly
    def replay(
        file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or JSONL file."),
        rate: float = typer.Option(None, help="Items per second (0: as fast as Kafka takes them)."),
        speedup: float = typer.Option(
            None, help="Replay the file's own times this many times faster."
        ),
        timestamps: str = typer.Option(
            None, help="keep | rebase (first row's time = now). Default: settings."
        ),
        source: str = typer.Option(
            None, help="Source for rows without one (default: settings, 'replay')."
        ),
        limit: int = typer.Option(None, help="Stop after this many records."),
        id_salt: str = typer.Option(
            "", help="Mix this into every id, so a second replay is not deduplicated."
        ),
        fmt: str = typer.Option(None, "--format", help="csv | jsonl (default: by extension)."),
        truth: Path = typer.Option(
            None,
            exists=True,
            dir_okay=False,
            help="Ground truth of FILE (default: FILE's .truth.json if present).",
        ),
        truth_out: Path = typer.Option(
            None, help="Write the ground truth moved to the replayed times here."
        ),
        metrics_port: int = typer.Option(None, help="Port of /metrics (0: any free port)."),
    ) -> None:
        """Replay a CSV/JSONL file into news.raw at a rate or a speed-up of its timestamps.

        Rows: `text` (or `title`/`body`), optional `published_at` (RFC 3339 or epoch),
        `source`, `tickers`, `url`, `id`. With --speedup 10, rows 15 minutes apart in
        the file are sent 1 minute apart; with --timestamps rebase (default) every
        time is shifted so that the first row happens now. Without --rate or
        --speedup the rate is FINSENTRY_REPLAY_RATE_PER_SECOND (10/s).
        """
        from rich.progress import Progress

        from pipeline.ingest.demo import truth_path
        from pipeline.ingest.replay import ReplayOptions, read_rows
        from pipeline.ingest.service import run_replay
        from pipeline.settings import KafkaSettings, ReplaySettings

        settings = ReplaySettings(
            **({"metrics_port": metrics_port} if metrics_port is not None else {})
        )
        if rate is None and speedup is None:
            rate = settings.rate_per_second
        options = ReplayOptions(
            rate_per_second=rate,
            speedup=speedup,
            timestamps=timestamps or settings.timestamps,
            default_source=source or settings.default_source,
            limit=limit,
            id_salt=id_salt,
        )
        if truth is None and truth_path(file).is_file():
            truth = truth_path(file)
        total = sum(1 for _ in read_rows(file, fmt))
        if limit is not None:
            total = min(total, limit)
        with Progress(transient=True) as bar:
            task = bar.add_task(f"replaying {file.name}", total=total)
            report = run_replay(
                file,
                options,
                settings=settings,
                kafka=KafkaSettings(),
                fmt=fmt,
                truth=truth,
                truth_out=truth_out,
                total=total,
                progress=lambda n: bar.update(task, completed=n),
            )
        skipped = ", ".join(f"{k} {v}" for k, v in sorted(report.skipped.items())) or "none"
        typer.echo(
            f"replayed {report.acknowledged} of {report.rows} rows in {report.wall_seconds:.1f} s "
            f"({report.failed} not acknowledged; skipped: {skipped})"
        )
        if report.offset is not None:
            typer.echo(f"timestamps moved by {report.offset.total_seconds():+.3f} s")
        if truth_out is not None:
            typer.echo(f"ground truth at replay times: {truth_out}")
        if report.failed:
            raise typer.Exit(1)

    @app.command("demo-stream")
    @_friendly
    def demo_stream(
        out: Path = typer.Option(
            Path("demo_stream.jsonl"), help="JSONL to write; the truth goes beside it."
        ),
        seed: int = typer.Option(7, help="Random seed (same seed + data = same file)."),
        start: datetime = typer.Option(
            "2026-01-05T14:00:00", help="Event time of minute 0 (UTC); replays usually re-base it."
        ),
        duration_minutes: float = typer.Option(40.0, help="Event-time length of the stream."),
        rate_per_minute: float = typer.Option(24.0, help="Calm articles per minute, all topics."),
        spike_dimension: str = typer.Option("topic", help="topic | ticker."),
        spike_key: str = typer.Option(
            "Energy | Oil", help="Topic name (e.g. 'Earnings') or ticker (e.g. TSLA)."
        ),
        spike_start_minute: float = typer.Option(30.0, help="Minute at which the spike starts."),
        spike_minutes: float = typer.Option(5.0, help="Length of the spike."),
        spike_per_minute: float = typer.Option(
            8.0, help="Extra negative articles per minute on the key."
        ),
        key_rate_per_minute: float = typer.Option(1.0, help="Calm articles per minute on the key."),
        spike_ticker: str = typer.Option(
            "XOM", help="With a topic spike, tag the key's articles with this ticker too "
            "('' for none), so the demo also shows a ticker spike."
        ),
        data_dir: Path = typer.Option(
            None, file_okay=False, help="Labelled CSVs (default: models/data, then ../shared/data)."
        ),
    ) -> None:
        """Build a replayable demo stream with a known negative spike, and its ground truth.

        Texts come from the model's held-out splits when present (models/data/
        heldout_*.csv), else from the training CSVs. The truth file (OUT with
        .truth.json) names the spike's dimension, key, start and end.
        Replay it with: finsentry replay OUT --speedup 10
        """
        from datetime import UTC

        from pipeline.ingest.demo import DemoSpec, build_demo_stream, write_demo_stream
        from pipeline.settings import ReplaySettings

        spec = DemoSpec(
            seed=seed,
            start=start.replace(tzinfo=start.tzinfo or UTC),
            duration_minutes=duration_minutes,
            rate_per_minute=rate_per_minute,
            spike_dimension=spike_dimension,  # type: ignore[arg-type]
            spike_key=spike_key,
            spike_start_minute=spike_start_minute,
            spike_minutes=spike_minutes,
            spike_per_minute=spike_per_minute,
            key_rate_per_minute=key_rate_per_minute,
            spike_ticker=spike_ticker or None,
        )
        rows, truth = build_demo_stream(spec, data_dir or ReplaySettings().data_dir)
        sidecar = write_demo_stream(rows, truth, out)
        spike = truth["spike"]
        typer.echo(
            f"wrote {len(rows)} articles to {out} "
            f"({truth['data']['dir']}, heldout={truth['data']['heldout']}); "
            f"spike: {spike['dimension']} {spike['key']!r} {spike['start']} .. {spike['end']} "
            f"({spike['articles']} articles); truth: {sidecar}"
        )
