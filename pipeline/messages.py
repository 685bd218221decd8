"""Typed messages on finsentry's Kafka topics, and every bytes <-> type conversion.

Nothing else in finsentry parses or serialises record values: a stage calls
``decode_*`` on what it consumed and ``encode`` on what it produces. Decoding
failures raise :class:`InvalidMessage` whose message names the stage and the
bad value; the caller sends the original bytes to ``news.dlq`` with
:func:`dead_letter`.

Wire format: JSON, UTF-8, one object per record, with ``schema`` (int). Times
are UTC, RFC 3339 (``2026-11-28T13:45:00Z``).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

SCHEMA_VERSION = 1

#: A record larger than this is refused before JSON parsing (bytes).
MAX_RECORD_BYTES = 2_000_000
#: Longest title kept (characters).
MAX_TITLE_CHARS = 1_000
#: Longest body kept (characters); longer bodies are refused, not truncated.
MAX_BODY_CHARS = 200_000

Sentiment = Literal["negative", "neutral", "positive"]
SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
Dimension = Literal["all", "topic", "ticker"]


class InvalidMessage(ValueError):
    """A record that cannot be turned into its message type.

    ``reason`` is a short stable slug (used as a metric label), ``detail`` is
    the readable explanation that goes to the dead-letter topic.
    """

    def __init__(self, stage: str, reason: str, detail: str) -> None:
        super().__init__(f"{stage}: {reason}: {detail}")
        self.stage = stage
        self.reason = reason
        self.detail = detail


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone; finsentry wants UTC (suffix Z)")
    return value.astimezone(UTC)


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    value = _to_utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


UtcTime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def article_id(canonical_url: str | None = None, *, source: str = "", guid: str = "") -> str:
    """Stable article id: sha256 of the canonical URL, or of source + guid (24 hex)."""
    if canonical_url:
        basis = canonical_url
    elif source and guid:
        basis = f"{source}\x1f{guid}"
    else:
        raise ValueError("article_id needs a canonical URL or both source and guid")
    return hashlib.sha256(basis.encode("utf-8")).hexdigest()[:24]


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema version {value} (this build reads {SCHEMA_VERSION})")
        return value


def _no_control_chars(value: str) -> str:
    # Keep tabs and newlines; other C0 controls and NUL break terminals and logs.
    return "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 32 and ord(ch) != 127)


class RawArticle(_Message):
    """``news.raw``: an article as crawled or replayed (event time = published_at)."""

    id: str = Field(min_length=1, max_length=128)
    url: str = Field(default="", max_length=4096)
    source: str = Field(min_length=1, max_length=256)
    title: str = Field(default="", max_length=MAX_TITLE_CHARS)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    published_at: UtcTime
    fetched_at: UtcTime
    lang: str = Field(default="und", max_length=16)
    tickers: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list, max_length=64
    )
    duplicate_of: str | None = Field(default=None, max_length=128)

    @field_validator("title", "body")
    @classmethod
    def _clean_text(cls, value: str) -> str:
        return _no_control_chars(value)

    @field_validator("tickers")
    @classmethod
    def _upper_tickers(cls, value: list[str]) -> list[str]:
        return sorted({t.strip().upper().lstrip("$") for t in value if t.strip()})

    @property
    def text(self) -> str:
        """What the classifier reads: title, then body."""
        return f"{self.title}\n{self.body}".strip()


class ScoredArticle(_Message):
    """``news.scored``: the raw fields without ``body``, plus the model's verdict."""

    id: str
    url: str = ""
    source: str
    title: str = ""
    published_at: UtcTime
    fetched_at: UtcTime
    lang: str = "und"
    tickers: list[str] = Field(default_factory=list)
    duplicate_of: str | None = None
    topic: str
    topic_score: float = Field(ge=0.0, le=1.0)
    sentiment: Sentiment
    sentiment_score: float = Field(ge=-1.0, le=1.0, description="p(positive) - p(negative)")
    confidence: float = Field(ge=0.0, le=1.0)
    model_version: str
    scored_at: UtcTime

    @classmethod
    def from_raw(cls, raw: RawArticle, **verdict: Any) -> ScoredArticle:
        fields = raw.model_dump(exclude={"body", "schema_"})
        return cls(**fields, **verdict)


class DeadLetter(_Message):
    """``news.dlq``: a record some stage could not process, with the reason."""

    original: str
    original_encoding: Literal["utf-8", "base64"]
    stage: str
    reason: str
    error: str
    at: UtcTime
    source_topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None

    def original_bytes(self) -> bytes:
        if self.original_encoding == "base64":
            return base64.b64decode(self.original)
        return self.original.encode("utf-8")


class SentimentWindow(_Message):
    """``sentiment.windows``: counts and sentiment of one key in one event-time window."""

    window_start: UtcTime
    window_end: UtcTime
    dimension: Dimension
    key: str
    articles: int = Field(ge=0)
    negative: int = Field(ge=0)
    neutral: int = Field(ge=0)
    positive: int = Field(ge=0)
    negative_ratio: float = Field(ge=0.0, le=1.0)
    mean_sentiment: float = Field(ge=-1.0, le=1.0)
    weighted_mean_sentiment: float | None = Field(default=None, ge=-1.0, le=1.0)

    @property
    def window_seconds(self) -> int:
        return int((self.window_end - self.window_start).total_seconds())


class LateArticle(ScoredArticle):
    """``sentiment.late``: a scored article that reached the aggregation job behind its
    watermark, so no window counts it. The scored fields plus where and when it was late."""

    watermark_at: UtcTime
    source_topic: str | None = None
    partition: int | None = None
    offset: int | None = None

    @property
    def late_by_ms(self) -> int:
        return int((self.watermark_at - self.published_at).total_seconds() * 1000)


Message = RawArticle | ScoredArticle | DeadLetter | SentimentWindow | LateArticle


def encode(message: Message) -> bytes:
    """Serialise a message to its wire bytes (compact JSON, UTF-8)."""
    return message.model_dump_json(by_alias=True, exclude_none=True).encode("utf-8")


def _decode(model: type[_Message], data: bytes | None, stage: str):
    if data is None:
        raise InvalidMessage(stage, "empty_record", "record value is null (tombstone)")
    if len(data) > MAX_RECORD_BYTES:
        raise InvalidMessage(
            stage, "too_large", f"record is {len(data)} bytes, limit is {MAX_RECORD_BYTES}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(stage, "invalid_utf8", f"not UTF-8 at byte {exc.start}") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessage(stage, "invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(payload, dict):
        raise InvalidMessage(stage, "not_an_object", f"expected a JSON object, got {type(payload).__name__}")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        reason = "missing_field" if first["type"] == "missing" else "invalid_field"
        raise InvalidMessage(stage, reason, f"{where}: {first['msg']}") from exc


def decode_raw(data: bytes | None, stage: str = "classify") -> RawArticle:
    article = _decode(RawArticle, data, stage)
    if not article.text:
        raise InvalidMessage(stage, "empty_text", f"article {article.id} has neither title nor body")
    return article


def decode_scored(data: bytes | None, stage: str = "aggregate") -> ScoredArticle:
    return _decode(ScoredArticle, data, stage)


def decode_dead_letter(data: bytes | None, stage: str = "dlq") -> DeadLetter:
    return _decode(DeadLetter, data, stage)


def decode_window(data: bytes | None, stage: str = "export") -> SentimentWindow:
    return _decode(SentimentWindow, data, stage)


def decode_late(data: bytes | None, stage: str = "late") -> LateArticle:
    return _decode(LateArticle, data, stage)


def dead_letter(
    original: bytes | None,
    error: InvalidMessage | Exception,
    *,
    stage: str,
    source_topic: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
) -> DeadLetter:
    """Wrap bytes that could not be processed; keeps them as text when they are UTF-8."""
    original = original or b""
    try:
        text, encoding = original.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(original).decode("ascii"), "base64"
    if isinstance(error, InvalidMessage):
        reason, detail = error.reason, error.detail
    else:
        reason, detail = type(error).__name__.lower(), str(error) or type(error).__name__
    return DeadLetter(
        original=text,
        original_encoding=encoding,
        stage=stage,
        reason=reason,
        error=detail,
        at=utc_now(),
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
    )
