"""Replay CSV or JSONL files into ``news.raw`` at a rate or a speed-up of their own times.

Input rows (CSV header or JSONL keys; unknown keys are ignored):

- ``text``, or ``title`` and/or ``body`` (a ``text`` becomes the title's first
  line and the body's rest);
- optional ``published_at`` (aliases ``timestamp``, ``time``, ``date``,
  ``created_at``): RFC 3339, ISO 8601 (a time without offset is taken as UTC),
  or epoch seconds / milliseconds;
- optional ``source``, ``url``, ``id``, ``lang``, ``tickers`` (a JSON list, or
  a string separated by ``;``, ``,`` or spaces).

Pacing: ``rate_per_second`` spaces records evenly (0 = as fast as Kafka takes
them); ``speedup`` keeps the file's own spacing divided by the factor (a row
``t`` seconds after the first is sent ``t / speedup`` seconds after the start).
Timestamps: ``keep`` sends the file's times; ``rebase`` shifts every time by
the same offset so that the first row's time is the moment the replay starts
(relative spacing, hence event-time windows, unchanged).
"""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from pydantic import ValidationError

from pipeline.ingest.canonical import InvalidUrl, canonical_url
from pipeline.ingest.extract import detect_language, warm_up_language_model
from pipeline.ingest.sink import ArticleSink
from pipeline.ingest.tickers import TickerTagger
from pipeline.messages import MAX_TITLE_CHARS, RawArticle, article_id
from pipeline.metrics.definitions import ReplayMetrics

log = logging.getLogger(__name__)

#: Falling further behind schedule than this re-anchors the schedule (no catch-up burst).
STALL_SECONDS = 0.1
TIME_KEYS = ("published_at", "timestamp", "time", "date", "created_at")
_TICKER_SPLIT = re.compile(r"[;,\s]+")


class ReplayError(ValueError):
    """A replay file or option that cannot be used."""


class Clock(Protocol):
    """Wall time for timestamps, monotonic time and sleep for pacing (tests move a fake one)."""

    def now(self) -> datetime: ...

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class ReplayOptions:
    """Exactly one of ``rate_per_second`` and ``speedup`` is set."""

    rate_per_second: float | None = None
    speedup: float | None = None
    timestamps: Literal["keep", "rebase"] = "rebase"
    default_source: str = "replay"
    limit: int | None = None
    #: Salt mixed into every id, so a second replay of one file is not deduplicated away.
    id_salt: str = ""
    #: Wait for Kafka acknowledgements at least this often (records).
    flush_every: int = 200

    def __post_init__(self) -> None:
        if (self.rate_per_second is None) == (self.speedup is None):
            raise ReplayError("replay: give exactly one of a rate (items/s) or a speed-up factor")
        if self.rate_per_second is not None and self.rate_per_second < 0:
            raise ReplayError(f"replay: rate must be >= 0 items/s, got {self.rate_per_second}")
        if self.speedup is not None and self.speedup <= 0:
            raise ReplayError(f"replay: speed-up must be > 0, got {self.speedup}")
        if self.timestamps not in ("keep", "rebase"):
            raise ReplayError(f"replay: timestamps must be keep or rebase, got {self.timestamps!r}")
        if self.limit is not None and self.limit < 0:
            raise ReplayError(f"replay: limit must be >= 0, got {self.limit}")


@dataclass
class ReplayReport:
    rows: int = 0
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0
    skipped: Counter = field(default_factory=Counter)
    started_at: datetime | None = None
    #: Added to every file time under ``rebase`` (None under ``keep`` or without times).
    offset: timedelta | None = None
    wall_seconds: float = 0.0


def parse_time(value) -> datetime | None:
    """A UTC datetime from RFC 3339 / ISO 8601 text or epoch seconds/milliseconds; None if empty."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) or (
        isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip())
    ):
        number = float(value)
        return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
    text = str(value).strip().replace("Z", "+00:00").replace("z", "+00:00")
    parsed = datetime.fromisoformat(text)  # ValueError for garbage: the caller counts it
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def read_rows(path: Path, fmt: str | None = None) -> Iterator[tuple[int, dict]]:
    """(line or record number, row) of a CSV or JSONL file; a broken JSON line yields ``{}``."""
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "jsonl")
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "csv":
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, row
            return
        if fmt != "jsonl":
            raise ReplayError(f"replay: unknown format {fmt!r} (csv or jsonl)")
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = {}
            yield number, row if isinstance(row, dict) else {}


def _tickers(value) -> list[str]:
    if not value:
        return []
    items = value if isinstance(value, list) else _TICKER_SPLIT.split(str(value))
    return [str(t).strip().lstrip("$") for t in items if str(t).strip().lstrip("$")]


class RowError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def row_fields(row: dict, default_source: str) -> dict:
    """The article fields of one row, without times; raises RowError."""
    title = str(row.get("title") or "").strip()
    body = str(row.get("body") or "").strip()
    text = str(row.get("text") or "").strip()
    if text and not (title or body):
        first, _, rest = text.partition("\n")
        title, body = first.strip(), rest.strip()
        if len(title) > MAX_TITLE_CHARS:
            title, body = "", text
    if not (title or body):
        raise RowError("empty_text", "no text, title or body")
    url = str(row.get("url") or "").strip()
    if url:
        try:
            url = canonical_url(url)
        except InvalidUrl as exc:
            raise RowError("invalid_row", str(exc)) from exc
    return {
        "title": title,
        "body": body,
        "url": url,
        "source": str(row.get("source") or default_source).strip(),
        "tickers": _tickers(row.get("tickers")),
        "lang": str(row.get("lang") or "").strip(),
        "id": str(row.get("id") or "").strip(),
    }


def _row_time(row: dict) -> datetime | None:
    for key in TIME_KEYS:
        if row.get(key) not in (None, ""):
            try:
                return parse_time(row[key])
            except (ValueError, OverflowError, OSError) as exc:
                raise RowError("bad_timestamp", f"{key}={row[key]!r}") from exc
    return None


class Replayer:
    def __init__(
        self,
        sink: ArticleSink,
        options: ReplayOptions,
        metrics: ReplayMetrics,
        *,
        clock: Clock | None = None,
        tagger: TickerTagger | None = None,
    ) -> None:
        self.sink = sink
        self.options = options
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.tagger = tagger or TickerTagger()
        self._source_labels: set[str] = set()
        warm_up_language_model()  # so loading it does not stall the first paced record

    def _label(self, source: str) -> str:
        """Metric label for a source: the first 20 distinct names, then ``other``."""
        if source in self._source_labels:
            return source
        if len(self._source_labels) < 20 and len(source) <= 64:
            self._source_labels.add(source)
            return source
        return "other"

    def run(
        self,
        rows: Iterable[tuple[int, dict]],
        *,
        total: int | None = None,
        progress: Callable[[int], None] | None = None,
        on_offset: Callable[[timedelta], None] | None = None,
    ) -> ReplayReport:
        """Replay ``rows`` (from :func:`read_rows`); returns what happened.

        ``on_offset`` is called once, before the first record is sent, with the
        offset that ``rebase`` adds to every file time.
        """
        opts, clock = self.options, self.clock
        started = clock.now()
        # whole milliseconds: the wire format keeps ms, so offsets stay exact end to end
        report = ReplayReport(
            started_at=started.replace(microsecond=started.microsecond // 1000 * 1000)
        )
        start_mono = clock.monotonic()
        first_time: datetime | None = None
        last_target = 0.0
        for number, row in rows:
            if opts.limit is not None and report.sent >= opts.limit:
                break
            report.rows += 1
            try:
                fields = row_fields(row, opts.default_source)
                when = _row_time(row)
                if opts.speedup is not None and when is None:
                    raise RowError("bad_timestamp", "speed-up replay needs a time on every row")
            except RowError as exc:
                self._skip(report, exc.reason, number, str(exc))
                continue
            if when is not None and first_time is None:
                first_time = when
                if opts.timestamps == "rebase":
                    report.offset = report.started_at - first_time
                    if on_offset is not None:
                        on_offset(report.offset)
            if opts.speedup is not None:
                target = (when - first_time).total_seconds() / opts.speedup
            elif opts.rate_per_second:
                target = report.sent / opts.rate_per_second
            else:
                target = 0.0
            wait = start_mono + target - clock.monotonic()
            if wait > 0:
                clock.sleep(wait)
            elif wait < -STALL_SECONDS and target >= last_target:
                # a stall (broker, disk): shift the schedule instead of bursting to catch up;
                # a row that is early in the file's own order is just sent now
                start_mono -= wait
            last_target = max(last_target, target)
            fetched_at = clock.now()
            if when is None:
                published = fetched_at
            else:
                published = when + report.offset if report.offset is not None else when
            try:
                article = self._article(fields, when, published, fetched_at)
            except ValidationError as exc:
                self._skip(report, "invalid_row", number, str(exc.errors()[0]["msg"]))
                continue
            self.sink.send(article)
            report.sent += 1
            if report.sent % opts.flush_every == 0:
                self._flush(report)
            if progress is not None:
                progress(report.rows)
            if total:
                self.metrics.progress.set(min(report.rows / total, 1.0))
        self._flush(report)
        if total:
            self.metrics.progress.set(1.0)
        report.wall_seconds = clock.monotonic() - start_mono
        return report

    def _article(
        self, fields: dict, when: datetime | None, published: datetime, fetched_at: datetime
    ) -> RawArticle:
        key = fields["id"]
        if not key:
            guid = f"{when.isoformat() if when else ''}\x1f{fields['title']}\x1f{fields['body']}"
            key = (
                article_id(fields["url"])
                if fields["url"]
                else article_id(source=fields["source"], guid=guid)
            )
        if self.options.id_salt:
            key = article_id(source=self.options.id_salt, guid=key)
        tickers = fields["tickers"] or self.tagger.tickers(fields["title"], fields["body"])
        return RawArticle(
            id=key,
            url=fields["url"],
            source=fields["source"],
            title=fields["title"],
            body=fields["body"],
            published_at=published,
            fetched_at=fetched_at,
            lang=fields["lang"] or detect_language(f"{fields['title']}\n{fields['body']}"),
            tickers=tickers,
        )

    def _skip(self, report: ReplayReport, reason: str, number: int, detail: str) -> None:
        log.warning("replay: row %d skipped: %s", number, detail[:300])
        report.skipped[reason] += 1
        self.metrics.rows_skipped.labels(reason=reason).inc()

    def _flush(self, report: ReplayReport) -> None:
        for article, error in self.sink.flush():
            source = self._label(article.source)
            if error is None:
                report.acknowledged += 1
                self.metrics.articles_emitted.labels(source=source).inc()
            else:
                report.failed += 1
                log.warning("replay: article %s not acknowledged: %s", article.id, error)
                self.metrics.emit_failures.labels(source=source).inc()
