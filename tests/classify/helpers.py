"""In-process kit for classifier tests: records, a list consumer, a scripted classifier."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.classify.engine import Prediction
from pipeline.messages import RawArticle, encode


@dataclass(frozen=True)
class Record:
    """The fields of ``kafka.consumer.fetcher.ConsumerRecord`` the service reads."""

    value: bytes | None
    key: bytes | None = None
    topic: str = "news.raw"
    partition: int = 0
    offset: int = 0


def raw(article_id: str, title: str = "Stocks rally as the Fed pauses", **fields) -> RawArticle:
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    values = dict(id=article_id, url=f"https://example.com/{article_id}", source="test",
                  title=title, body="", published_at=now, fetched_at=now, tickers=["AAPL"])
    values.update(fields)
    return RawArticle(**values)


def raw_bytes(article_id: str, **fields) -> bytes:
    return encode(raw(article_id, **fields))


#: Bad record values and the DLQ reason each must get.
BAD_RECORDS: dict[str, tuple[bytes | None, str]] = {
    "not_json": (b"{not json", "invalid_json"),
    "invalid_utf8": (b'{"id": "\xff\xfe"}', "invalid_utf8"),
    "missing_field": (
        json.dumps({"schema": 1, "id": "m1", "source": "t"}).encode(),
        "missing_field",
    ),
    "wrong_type": (
        json.dumps({"schema": 1, "id": "w1", "source": "t", "title": "x",
                    "published_at": "yesterday", "fetched_at": "2026-11-28T12:00:00Z"}).encode(),
        "invalid_field",
    ),
    "empty_text": (
        json.dumps({"schema": 1, "id": "e1", "source": "t", "title": "  ", "body": "",
                    "published_at": "2026-11-28T12:00:00Z",
                    "fetched_at": "2026-11-28T12:00:00Z"}).encode(),
        "empty_text",
    ),
    "array": (b"[1, 2, 3]", "not_an_object"),
}


class ListConsumer:
    """``poll`` hands out pre-loaded record lists, one list per call; then nothing."""

    def __init__(
        self, polls: Sequence[Sequence[Record]], clock=None, poll_cost: float = 0.0
    ) -> None:
        self._polls = deque(list(p) for p in polls)
        self.calls: list[tuple[int, int | None]] = []
        self._clock = clock
        self._poll_cost = poll_cost

    def poll(self, timeout_ms: int = 0, max_records: int | None = None):
        self.calls.append((timeout_ms, max_records))
        if self._clock is not None:
            self._clock.advance(self._poll_cost if self._polls else timeout_ms / 1000)
        if not self._polls:
            return {}
        records = self._polls.popleft()
        if max_records is not None and len(records) > max_records:
            self._polls.appendleft(records[max_records:])
            records = records[:max_records]
        return {"tp": records} if records else {}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedClassifier:
    """Negative for titles containing 'crash', positive otherwise; fails on 'poison'."""

    def __init__(self, version: str = "scripted-1") -> None:
        self._version = version
        self.calls: list[int] = []

    @property
    def version(self) -> str:
        return self._version

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.calls.append(len(texts))
        if any("poison" in t for t in texts):
            raise RuntimeError("model exploded on a poison text")
        out = []
        for text in texts:
            negative = "crash" in text
            out.append(Prediction(
                topic="Markets", topic_score=0.9,
                sentiment="negative" if negative else "positive",
                sentiment_score=-0.8 if negative else 0.7,
                confidence=0.85, model_version=self._version,
            ))
        return out
