"""Testing kit for the aggregation job: run ``finsentry aggregate`` as a subprocess,
feed ``news.scored``, read what comes out, and compute expected windows in Python.

End-to-end tests elsewhere start the job the same way::

    with AggregateProcess(kafka, settings, run_dir=tmp_path) as job:
        job.wait_running()
        ...  # produce to kafka.topic_scored, then
        windows = read_windows(kafka, expected=12)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from pipeline import messages
from pipeline.settings import AggregateSettings, KafkaSettings, ServiceSettings

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def settings_env(*all_settings: ServiceSettings) -> dict[str, str]:
    """``FINSENTRY_<SECTION>_<FIELD>`` variables that reproduce these settings in a subprocess."""
    env: dict[str, str] = {}
    for settings in all_settings:
        for name, value in settings.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"FINSENTRY_{settings.section.upper()}_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
    return env


def scored(
    id: str,
    at_seconds: float,
    *,
    topic: str = "earnings",
    sentiment: str = "neutral",
    score: float = 0.0,
    confidence: float = 1.0,
    tickers: Iterable[str] = (),
    duplicate_of: str | None = None,
) -> messages.ScoredArticle:
    """A ``news.scored`` article published ``at_seconds`` after :data:`T0`."""
    published = T0 + timedelta(seconds=at_seconds)
    return messages.ScoredArticle(
        id=id,
        source="test",
        published_at=published,
        fetched_at=published,
        tickers=list(tickers),
        duplicate_of=duplicate_of,
        topic=topic,
        topic_score=0.9,
        sentiment=sentiment,
        sentiment_score=score,
        confidence=confidence,
        model_version="test",
        scored_at=published,
    )


def produce(
    kafka: KafkaSettings,
    articles: Iterable[messages.ScoredArticle | tuple[int, bytes]],
    *,
    partition_of: Callable[[messages.ScoredArticle], int | None] = lambda a: None,
) -> None:
    """Write articles (keyed by id) to ``news.scored``; ``(partition, bytes)`` pairs go as is."""
    from pipeline.kafka_io import make_producer

    producer = make_producer(kafka)
    try:
        for item in articles:
            if isinstance(item, tuple):
                producer.send(kafka.topic_scored, value=item[1], partition=item[0])
            else:
                producer.send(
                    kafka.topic_scored,
                    key=item.id.encode(),
                    value=messages.encode(item),
                    partition=partition_of(item),
                )
        producer.flush()
    finally:
        producer.close()


def watermark_movers(
    kafka: KafkaSettings, at_seconds: float, prefix: str
) -> list[tuple[int, bytes]]:
    """One neutral article per partition at ``at_seconds``: every partition's watermark moves."""
    return [
        (p, messages.encode(scored(f"{prefix}-{p}", at_seconds, topic="macro")))
        for p in range(kafka.partitions)
    ]


def read_topic(
    kafka: KafkaSettings,
    topic: str,
    *,
    expected: int,
    timeout_seconds: float,
    settle_seconds: float = 0.0,
    committed: bool = True,
) -> list[bytes]:
    """Records of ``topic`` from the beginning: waits for ``expected`` of them (or the
    timeout), then ``settle_seconds`` more so that extra records would show up.

    ``committed=False`` also returns records of open and aborted transactions (what the
    exactly-once sink wrote but has not committed), which only tests should want."""
    from pipeline.kafka_io import make_consumer

    isolation = "read_committed" if committed else "read_uncommitted"
    consumer = make_consumer(
        kafka, None, topic, isolation_level=isolation, auto_offset_reset="earliest"
    )
    values: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_seconds
        settle_until = None
        while time.monotonic() < (settle_until or deadline):
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
            if settle_until is None and len(values) >= expected:
                settle_until = time.monotonic() + settle_seconds
    finally:
        consumer.close()
    return values


def read_windows(
    kafka: KafkaSettings,
    *,
    expected: int,
    timeout_seconds: float = 120.0,
    settle_seconds: float = 0.0,
    committed: bool = True,
) -> list[messages.SentimentWindow]:
    values = read_topic(
        kafka,
        kafka.topic_windows,
        expected=expected,
        committed=committed,
        timeout_seconds=timeout_seconds,
        settle_seconds=settle_seconds,
    )
    return [messages.decode_window(v) for v in values]


@dataclass(frozen=True)
class WindowKey:
    window_start: datetime
    window_end: datetime
    dimension: str
    key: str


def window_key(window: messages.SentimentWindow) -> WindowKey:
    return WindowKey(window.window_start, window.window_end, window.dimension, window.key)


def expected_windows(
    articles: Iterable[messages.ScoredArticle], settings: AggregateSettings, *, until: datetime
) -> dict[WindowKey, messages.SentimentWindow]:
    """What the job must emit for ``articles`` (already de-duplicated, none late), for windows
    that end at or before ``until``: the reference implementation the tests compare with."""
    sizes = [(settings.tumbling_window_ms, settings.tumbling_window_ms)]
    if settings.hopping_window_ms:
        sizes.append((settings.hopping_window_ms, settings.hopping_slide_ms))
    groups: dict[WindowKey, list[messages.ScoredArticle]] = defaultdict(list)
    for article in articles:
        ms = int(article.published_at.timestamp() * 1000)
        for size, slide in sizes:
            last_start = ms - ms % slide
            for start in range(last_start, ms - size, -slide):
                start_dt = datetime.fromtimestamp(start / 1000, UTC)
                end_dt = start_dt + timedelta(milliseconds=size)
                if end_dt > until:
                    continue
                keys = [("all", "all"), ("topic", article.topic)]
                keys += [("ticker", t) for t in article.tickers]
                for dimension, key in keys:
                    groups[WindowKey(start_dt, end_dt, dimension, key)].append(article)
    result = {}
    for wk, group in groups.items():
        counts = {s: sum(a.sentiment == s for a in group) for s in messages.SENTIMENTS}
        weight = sum(a.confidence for a in group)
        result[wk] = messages.SentimentWindow(
            window_start=wk.window_start,
            window_end=wk.window_end,
            dimension=wk.dimension,
            key=wk.key,
            articles=len(group),
            negative=counts["negative"],
            neutral=counts["neutral"],
            positive=counts["positive"],
            negative_ratio=counts["negative"] / len(group),
            mean_sentiment=sum(a.sentiment_score for a in group) / len(group),
            weighted_mean_sentiment=(
                sum(a.sentiment_score * a.confidence for a in group) / weight if weight else None
            ),
        )
    return result


#: ``finsentry aggregate`` through the main CLI (loads every area's commands).
FINSENTRY_AGGREGATE = (sys.executable, "-m", "pipeline.cli", "aggregate")
#: The same command alone (``python -m pipeline.aggregate``): the default here.
PYTHON_M_AGGREGATE = (sys.executable, "-m", "pipeline.aggregate")


class AggregateProcess:
    """``finsentry aggregate`` in its own process group, with its log in ``run_dir``."""

    def __init__(
        self,
        kafka: KafkaSettings,
        settings: AggregateSettings,
        *,
        run_dir: Path,
        restore: str = "auto",
        name: str = "aggregate",
        command: tuple[str, ...] = PYTHON_M_AGGREGATE,
    ) -> None:
        self.kafka, self.settings, self.run_dir = kafka, settings, run_dir
        self.restore, self.name, self.command = restore, name, command
        self.status_file = run_dir / f"{name}.status.json"
        self.log_path = run_dir / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self._log = None

    def start(self) -> AggregateProcess:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.status_file.unlink(missing_ok=True)
        env = {**os.environ, **settings_env(self.kafka, self.settings)}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.process = subprocess.Popen(
            [
                *self.command,
                "--restore",
                self.restore,
                "--status-file",
                str(self.status_file),
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def wait_running(self, timeout_seconds: float = 300.0) -> dict:
        """Block until Flink reports the job RUNNING; raise with the log tail if it dies."""
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("state") == "RUNNING":
                return status
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"aggregate exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            time.sleep(0.3)
        raise TimeoutError(f"aggregate not RUNNING after {timeout_seconds} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the whole process group (Python driver and its JVM): no savepoint, no cleanup."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self._close_log()

    def stop(self, timeout_seconds: float = 60.0) -> int | None:
        """SIGTERM to the driver (not its JVM): the job stops with a savepoint; SIGKILL if it
        does not exit in time."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()
        return self.process.returncode if self.process else None

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def __enter__(self) -> AggregateProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()
