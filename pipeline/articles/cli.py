"""``finsentry articles``: query the article store; ``finsentry articles sink`` fills it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import typer

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration_seconds(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (like 30s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parse_since(text: str) -> datetime:
    """A duration back from now (``1h``) or an RFC 3339 time."""
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration_seconds(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither a duration (1h) nor an RFC 3339 time"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def register(app: typer.Typer) -> None:
    articles_app = typer.Typer(
        help="The article store: scored articles by time, topic, ticker and sentiment.",
        invoke_without_command=True,
        rich_markup_mode=None,
    )
    app.add_typer(articles_app, name="articles")

    @articles_app.callback()
    def articles(
        ctx: typer.Context,
        topic: str = typer.Option(None, help="Only this topic (exact name)."),
        ticker: str = typer.Option(None, help="Only articles mentioning this ticker."),
        sentiment: str = typer.Option(None, help="negative | neutral | positive."),
        since: str = typer.Option("24h", help="Published within this (1h, 15m) or after a time."),
        until: str = typer.Option(None, help="Published before this time (RFC 3339)."),
        limit: int = typer.Option(50, min=1, help="At most this many articles."),
        most_negative: bool = typer.Option(
            False, "--most-negative", help="Order by sentiment score, most negative first."
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    ) -> None:
        """List stored articles, newest first (FINSENTRY_ARTICLES_DATABASE_URL)."""
        if ctx.invoked_subcommand is not None:
            return
        from pipeline.articles.store import ArticleStore, ArticleStoreError
        from pipeline.settings import ArticleStoreSettings

        settings = ArticleStoreSettings()
        try:
            store = ArticleStore(settings.database_url.get_secret_value())
            rows = store.query(
                topic=topic,
                ticker=ticker,
                sentiment=sentiment,
                since=_parse_since(since),
                until=_parse_since(until) if until else None,
                limit=limit,
                order="most_negative" if most_negative else "newest",
            )
        except ArticleStoreError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from exc
        if as_json:
            for row in rows:
                typer.echo(json.dumps(row.to_json(), sort_keys=True))
            return
        if not rows:
            typer.echo("no articles match", err=True)
            return
        for row in rows:
            tickers = f" [{','.join(row.tickers)}]" if row.tickers else ""
            typer.echo(
                f"{row.published_at:%Y-%m-%d %H:%M:%S}Z  "
                f"{row.sentiment:<8} {row.sentiment_score:+.2f}  "
                f"{row.topic:<24.24} {row.source:<14.14} {row.title[:90]}{tickers}  ({row.id})"
            )

    @articles_app.command("sink")
    def sink(
        group_id: str = typer.Option(None, help="Consumer group shared by the sink replicas."),
        metrics_port: int = typer.Option(None, help="Port of /metrics (0: any free port)."),
    ) -> None:
        """Write news.scored into the article store until SIGTERM.

        Offsets are committed after the database transaction; rows are upserted
        by article id, so re-delivered records change nothing. Undecodable
        records go to news.dlq. Settings: FINSENTRY_ARTICLES_* (DATABASE_URL,
        RETENTION_SECONDS, ...). Also exports drift metrics on /metrics.
        """
        from pipeline.articles.runner import serve
        from pipeline.settings import ArticleStoreSettings

        overrides = {
            k: v
            for k, v in {"group_id": group_id, "metrics_port": metrics_port}.items()
            if v is not None
        }
        serve(ArticleStoreSettings(**overrides))
