"""One micro-batch, without Kafka: raw records in, scored articles and dead letters out.

Pure apart from the classifier call, so the whole decision table (what is
scored, what is dead-lettered and why) is unit-tested with plain lists.
A record that cannot be decoded, whose text is too long, or on which the model
fails becomes a :class:`~pipeline.messages.DeadLetter`; the others in the same
batch are scored as usual.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.classify.engine import Classifier
from pipeline.messages import (
    DeadLetter,
    InvalidMessage,
    RawArticle,
    ScoredArticle,
    dead_letter,
    decode_raw,
    utc_now,
)

log = logging.getLogger(__name__)

STAGE = "classify"


@dataclass
class BatchResult:
    """What to produce for one batch. ``scored`` and ``dead`` keep input order."""

    scored: list[ScoredArticle] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    inference_seconds: float = 0.0


def _dead(record: Any, error: Exception) -> DeadLetter:
    return dead_letter(
        record.value,
        error,
        stage=STAGE,
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
    )


def score_batch(records: list[Any], classifier: Classifier, *, max_text_chars: int) -> BatchResult:
    """Decode, validate and score ``records`` (with topic, partition, offset, key, value)."""
    result = BatchResult()
    good: list[tuple[Any, RawArticle]] = []
    for record in records:
        try:
            article = decode_raw(record.value, stage=STAGE)
            if len(article.text) > max_text_chars:
                raise InvalidMessage(
                    STAGE,
                    "text_too_long",
                    f"article {article.id} has {len(article.text)} characters of text, "
                    f"limit is {max_text_chars}",
                )
        except InvalidMessage as exc:
            result.dead.append(_dead(record, exc))
            continue
        good.append((record, article))
    if not good:
        return result

    started = time.perf_counter()
    try:
        predictions = classifier.predict([article.text for _, article in good])
        if len(predictions) != len(good):
            raise RuntimeError(
                f"classifier returned {len(predictions)} predictions for {len(good)} texts"
            )
        pairs = list(zip(good, predictions, strict=True))
    except Exception as exc:  # noqa: BLE001 - isolate the record that breaks the model
        log.warning("inference failed on a batch of %d (%s); retrying one by one", len(good), exc)
        pairs = []
        for record, article in good:
            try:
                pairs.append(((record, article), classifier.predict([article.text])[0]))
            except Exception as single:  # noqa: BLE001
                error = InvalidMessage(
                    STAGE,
                    "inference_failed",
                    f"model {classifier.version} failed on article {article.id}: "
                    f"{type(single).__name__}: {single}",
                )
                result.dead.append(_dead(record, error))
    result.inference_seconds = time.perf_counter() - started

    scored_at = utc_now()
    for (record, article), prediction in pairs:
        try:
            result.scored.append(
                ScoredArticle.from_raw(article, **prediction.verdict(), scored_at=scored_at)
            )
        except ValueError as exc:  # a verdict out of range: a model bug, never a silent drop
            error = InvalidMessage(
                STAGE, "inference_failed", f"invalid verdict for {article.id}: {exc}"
            )
            result.dead.append(_dead(record, error))
    return result
