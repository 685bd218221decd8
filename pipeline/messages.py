"""Typed messages on finsentry's Kafka topics, and every bytes <-> type conversion.

Nothing else in finsentry parses or serialises record values: a stage calls
``decode_*`` on what it consumed and ``encode`` on what it produces. Decoding
failures raise :class:`InvalidMessage` whose message names the stage and the
bad value; the caller sends the original bytes to ``news.dlq`` with
:func:`dead_letter`.

Wire format: JSON, UTF-8, one object per record, with ``schema`` (int). Times
are UTC, RFC 3339 (``2026-11-28T13:45:00Z``), kept to the millisecond.

Decoding is strict about types (a number is not a string, ``true`` is not 1, a
time is an RFC 3339 string, ``NaN`` and duplicate keys are not JSON) and never
raises anything but :class:`InvalidMessage`. The rules for bad input, and the
``reason`` slugs, are in docs/reliability.md ("Bad input").
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from pipeline.text import clean_text, has_control_chars, has_surrogates, replace_surrogates

SCHEMA_VERSION = 1

#: A record larger than this is refused before JSON parsing (bytes).
MAX_RECORD_BYTES = 2_000_000
#: Longest title kept (characters).
MAX_TITLE_CHARS = 1_000
#: Longest body kept (characters); longer bodies are refused, not truncated.
MAX_BODY_CHARS = 200_000
#: A dead letter keeps at most this many bytes of the original (exactly; the
#: size and sha256 of the whole original are always kept).
MAX_DLQ_ORIGINAL_BYTES = 1_000_000
#: ``news.dlq`` records can be larger than others (escaped original); below the broker's 4 MiB.
MAX_DLQ_RECORD_BYTES = 4_000_000
#: Longest ``error`` text in a dead letter (characters).
MAX_DLQ_ERROR_CHARS = 2_000
#: ``decode_raw`` refuses articles published before this (epoch-zero and similar bugs)...
EARLIEST_PUBLISHED_AT = datetime(1990, 1, 1, tzinfo=UTC)
#: ...or later than ``fetched_at`` plus this (one bad clock would advance the watermark).
MAX_PUBLISHED_AHEAD = timedelta(days=1)

_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.^=:/_-]{0,15}$|^\^[A-Z0-9.=:/_-]{1,15}$")
_LANG = re.compile(r"^[a-z]{2,3}(?:-[a-z0-9]{2,8})*$")

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
    """Aware -> UTC, truncated to the millisecond (what the wire and Flink keep)."""
    if value.tzinfo is None:
        raise ValueError("timestamp has no timezone; finsentry wants UTC (suffix Z)")
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from exc
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _parse_time(value: Any) -> Any:
    """Times arrive as RFC 3339 strings (or datetimes in Python); never as numbers."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"not an RFC 3339 time: {value[:40]!r}") from exc
    raise ValueError(f"expected an RFC 3339 time string, got {type(value).__name__}")


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    v = _to_utc(value)
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
            f"{v.second:02d}.{v.microsecond // 1000:03d}Z")


UtcTime = Annotated[
    datetime,
    BeforeValidator(_parse_time),
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

    #: Free-text fields: cleaned (titles, bodies) or kept verbatim (dead letters);
    #: every other string must be valid Unicode without control characters.
    _free_text: ClassVar[frozenset[str]] = frozenset()

    schema_: int = Field(default=SCHEMA_VERSION, alias="schema")

    @field_validator("schema_")
    @classmethod
    def _known_schema(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported schema version {value} (this build reads {SCHEMA_VERSION})"
            )
        return value

    @field_validator("*")
    @classmethod
    def _plain_strings(cls, value: Any, info) -> Any:
        if info.field_name in cls._free_text:
            return value
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, str) and (has_surrogates(item) or has_control_chars(item)):
                raise ValueError("contains a control character or a lone surrogate")
        return value


def _clean_title(cls, value: Any) -> Any:
    return clean_text(value) if isinstance(value, str) else value


def _clean_body(cls, value: Any) -> Any:
    return clean_text(value, markup=True) if isinstance(value, str) else value


def _normalise_lang(value: Any) -> Any:
    """BCP 47-ish, lower case; anything unrecognisable is ``und`` (undetermined)."""
    if not isinstance(value, str):
        return value
    tag = value.strip().lower().replace("_", "-")
    return tag if _LANG.match(tag) and len(tag) <= 16 else "und"


def _normalise_tickers(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    tickers = set()
    for item in value:
        if not isinstance(item, str):
            return value  # the type check reports it
        ticker = item.strip().upper().lstrip("$")
        if not _TICKER.match(ticker):
            raise ValueError(f"invalid ticker {item[:20]!r}")
        tickers.add(ticker)
    return sorted(tickers)


class RawArticle(_Message):
    """``news.raw``: an article as crawled or replayed (event time = published_at)."""

    _free_text: ClassVar[frozenset[str]] = frozenset({"title", "body"})

    id: str = Field(min_length=1, max_length=128, pattern=r"^\S+$")
    url: str = Field(default="", max_length=4096)
    source: str = Field(min_length=1, max_length=256)
    title: str = Field(default="", max_length=MAX_TITLE_CHARS)
    body: str = Field(default="", max_length=MAX_BODY_CHARS)
    published_at: UtcTime
    fetched_at: UtcTime
    lang: Annotated[str, BeforeValidator(_normalise_lang)] = "und"
    tickers: Annotated[list[str], BeforeValidator(_normalise_tickers)] = Field(
        default_factory=list, max_length=64
    )
    duplicate_of: str | None = Field(default=None, max_length=128)

    _clean_title = field_validator("title", mode="before")(classmethod(_clean_title))
    _clean_body = field_validator("body", mode="before")(classmethod(_clean_body))

    @property
    def text(self) -> str:
        """What the classifier reads: title, then body."""
        return f"{self.title}\n{self.body}".strip()


class ScoredArticle(_Message):
    """``news.scored``: the raw fields without ``body``, plus the model's verdict."""

    _free_text: ClassVar[frozenset[str]] = frozenset({"title"})

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

    _clean_title = field_validator("title", mode="before")(classmethod(_clean_title))

    @classmethod
    def from_raw(cls, raw: RawArticle, **verdict: Any) -> ScoredArticle:
        fields = raw.model_dump(exclude={"body", "schema_"})
        return cls(**fields, **verdict)


class DeadLetter(_Message):
    """``news.dlq``: a record some stage could not process, with the reason.

    ``original`` holds the record's bytes exactly: as text when they are UTF-8
    without control characters, else base64. Past ``MAX_DLQ_ORIGINAL_BYTES``
    only that prefix is kept (``original_truncated``); ``original_size_bytes``
    and ``original_sha256`` always describe the whole original. A key that is
    not UTF-8 is kept as base64 (``key_encoding``).
    """

    _free_text: ClassVar[frozenset[str]] = frozenset({"original", "error"})

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
    key_encoding: Literal["utf-8", "base64"] | None = None
    original_size_bytes: int | None = Field(default=None, ge=0)
    original_sha256: str | None = None
    original_truncated: bool | None = None

    def original_bytes(self) -> bytes:
        """The original record (its first MAX_DLQ_ORIGINAL_BYTES when truncated)."""
        return _unwrap(self.original, self.original_encoding)

    def key_bytes(self) -> bytes | None:
        return None if self.key is None else _unwrap(self.key, self.key_encoding or "utf-8")


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


def _unwrap(text: str, encoding: str) -> bytes:
    return base64.b64decode(text) if encoding == "base64" else text.encode("utf-8")


def _wrap(data: bytes) -> tuple[str, Literal["utf-8", "base64"]]:
    """Bytes as text when that is exact and compact, else base64."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    # Control characters would be JSON-escaped six bytes each: base64 is smaller.
    if text is not None and not has_control_chars(text):
        return text, "utf-8"
    return base64.b64encode(data).decode("ascii"), "base64"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:40]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _excerpt(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def _decode(model: type[_Message], data: bytes | None, stage: str, limit: int = MAX_RECORD_BYTES):
    if data is None:
        raise InvalidMessage(stage, "empty_record", "record value is null (tombstone)")
    data = bytes(data)
    if len(data) > limit:
        raise InvalidMessage(stage, "too_large", f"record is {len(data)} bytes, limit is {limit}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidMessage(stage, "invalid_utf8", f"not UTF-8 at byte {exc.start}") from exc
    try:
        payload = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        where = f"at line {exc.lineno} column {exc.colno}"
        raise InvalidMessage(stage, "invalid_json", f"{exc.msg} {where}") from exc
    except RecursionError as exc:
        raise InvalidMessage(stage, "invalid_json", "nested too deeply") from exc
    except ValueError as exc:  # duplicate keys, NaN/Infinity, integers past 4300 digits
        raise InvalidMessage(stage, "invalid_json", str(exc)[:200]) from exc
    if not isinstance(payload, dict):
        raise InvalidMessage(
            stage, "not_an_object", f"expected a JSON object, got {type(payload).__name__}"
        )
    try:
        return model.model_validate(payload, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        if first["type"] == "missing":
            reason = "missing_field"
        elif first["loc"][:1] == ("schema",):
            reason = "unsupported_schema"
        elif first["type"] in ("string_too_long", "too_long"):
            reason = "too_large"
        else:
            reason = "invalid_field"
        detail = f"{where}: {first['msg']}"
        if first["type"] != "missing":
            detail += f" (got {_excerpt(first.get('input'))})"
        raise InvalidMessage(stage, reason, detail) from exc


def decode_raw(data: bytes | None, stage: str = "classify") -> RawArticle:
    """Decode ``news.raw``; also refuses articles with no text and implausible times."""
    article = _decode(RawArticle, data, stage)
    if not article.text:
        raise InvalidMessage(
            stage, "empty_text",
            f"article {article.id} has no text (title and body empty, blank or markup only)",
        )
    latest = article.fetched_at + MAX_PUBLISHED_AHEAD
    if not EARLIEST_PUBLISHED_AT <= article.published_at <= latest:
        raise InvalidMessage(
            stage, "implausible_time",
            f"article {article.id} published_at {format_time(article.published_at)} is before "
            f"{format_time(EARLIEST_PUBLISHED_AT)} or more than {MAX_PUBLISHED_AHEAD} after "
            f"fetched_at {format_time(article.fetched_at)}",
        )
    return article


def decode_scored(data: bytes | None, stage: str = "aggregate") -> ScoredArticle:
    return _decode(ScoredArticle, data, stage)


def decode_dead_letter(data: bytes | None, stage: str = "dlq") -> DeadLetter:
    return _decode(DeadLetter, data, stage, limit=MAX_DLQ_RECORD_BYTES)


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
    """Wrap bytes that could not be processed, exactly (see :class:`DeadLetter`).

    A null value (tombstone) is wrapped as an empty original.
    """
    original = bytes(original or b"")
    kept = original[:MAX_DLQ_ORIGINAL_BYTES]
    text, encoding = _wrap(kept)
    key_text, key_encoding = _wrap(bytes(key)) if key is not None else (None, None)
    if isinstance(error, InvalidMessage):
        reason, detail = error.reason, error.detail
    else:
        reason, detail = type(error).__name__.lower(), str(error) or type(error).__name__
    detail = replace_surrogates(detail)
    if len(detail) > MAX_DLQ_ERROR_CHARS:
        detail = detail[:MAX_DLQ_ERROR_CHARS] + f"... ({len(detail)} chars)"
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
        key=key_text,
        key_encoding=key_encoding if key_encoding == "base64" else None,
        original_size_bytes=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        original_truncated=True if len(kept) < len(original) else None,
    )
