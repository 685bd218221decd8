"""One Flink job, hand-made records, and the exact window records that must come out.

The story (event times in seconds after T0 = 2026-01-01T00:00:00Z; one-minute
tumbling windows, two-minute hopping windows every minute, 5 s out-of-orderness):

phase 1: three articles in [0, 60), a re-delivered duplicate, a syndicated copy
         (duplicate_of), articles at 62 and 90, then one at 58 that arrives after
         the one at 62 (out of order, within the 5 s bound), then a watermark mover
         at 130 on every partition: windows ending at 60 and 120 close.
phase 2: (after those windows are visible) two late articles (40 and 119, behind
         the watermark of 125), a re-delivery of a mover, an on-time article at 128,
         an invalid record, and movers at 190: windows ending at 180 close.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from pipeline import messages
from pipeline.aggregate.testing import (
    T0,
    AggregateProcess,
    expected_windows,
    produce,
    read_topic,
    read_windows,
    scored,
    watermark_movers,
    window_key,
)

pytestmark = [pytest.mark.integration, pytest.mark.flink]

PHASE1 = [
    scored("a1", 10, sentiment="negative", score=-0.8, confidence=0.9, tickers=["AAPL", "MSFT"]),
    scored("a2", 20, sentiment="positive", score=0.6, confidence=0.5, tickers=["AAPL"]),
    scored("a3", 50, topic="macro", sentiment="neutral", score=0.0, confidence=1.0),
    scored("a1", 10, sentiment="negative", score=-0.8, confidence=0.9, tickers=["AAPL", "MSFT"]),
    scored("a4", 30, sentiment="positive", score=0.7, tickers=["AAPL"], duplicate_of="a2"),
    scored(
        "b1", 62, topic="macro", sentiment="negative", score=-0.5, confidence=0.8, tickers=["TSLA"]
    ),
    scored("b2", 58, sentiment="negative", score=-0.9, confidence=1.0, tickers=["AAPL"]),
    scored(
        "b3",
        90,
        topic="macro",
        sentiment="positive",
        score=0.4,
        confidence=0.2,
        tickers=["TSLA", "AAPL"],
    ),
]
LATE = [
    scored("l1", 40, sentiment="negative", score=-1.0, tickers=["AAPL"]),
    scored("l2", 119, topic="macro", sentiment="negative", score=-0.7, tickers=["TSLA"]),
]
ON_TIME = scored("a5", 128, sentiment="positive", score=0.5, confidence=0.6, tickers=["NVDA"])
NO_TICKERS = scored("a6", 129, topic="macro", sentiment="negative", score=-0.4)


def _edited(article, **changes) -> bytes:
    """The article's JSON with fields replaced (or removed, for None)."""
    fields = {**json.loads(messages.encode(article)), **changes}
    return json.dumps({k: v for k, v in fields.items() if v is not None}).encode()


INVALID = [
    (1, _edited(scored("x1", 129), sentiment="bogus")),
    (2, _edited(scored("x2", 129), confidence=None)),
]


@pytest.fixture(scope="module")
def outcome(aggregate_env):
    """Runs the whole story once; the tests below look at different parts of what came out."""
    env = aggregate_env
    kafka, settings = env.kafka, env.settings
    movers1 = watermark_movers(kafka, 130, "wm1")
    movers2 = watermark_movers(kafka, 190, "wm2")
    with AggregateProcess(kafka, settings, run_dir=env.run_dir) as job:
        job.wait_running()
        produce(kafka, PHASE1, partition_of=_partition)
        produce(kafka, movers1)
        first_windows = expected_windows(
            [a for a in PHASE1 if a.id not in ("a4",)], settings, until=T0 + timedelta(seconds=120)
        )
        seen = read_windows(kafka, expected=len(first_windows), timeout_seconds=120)
        assert len(seen) >= len(first_windows), job.log_tail()
        produce(
            kafka,
            [*LATE, (0, movers1[0][1]), ON_TIME, (0, _edited(NO_TICKERS, tickers=None)), *INVALID],
        )
        produce(kafka, movers2)
        counted = (
            _unique(PHASE1)
            + [messages.decode_scored(m) for _, m in movers1]
            + [ON_TIME, NO_TICKERS]
        )
        expected = expected_windows(counted, settings, until=T0 + timedelta(seconds=180))
        windows = read_windows(
            kafka,
            expected=len(expected),
            timeout_seconds=120,
            settle_seconds=3 * settings.checkpoint_interval_ms / 1000,
        )
        late = read_topic(kafka, settings.topic_late, expected=len(LATE), timeout_seconds=30)
        dlq = read_topic(kafka, kafka.topic_dlq, expected=len(INVALID), timeout_seconds=30)
        log = job.log_tail()
    return {"windows": windows, "expected": expected, "late": late, "dlq": dlq, "log": log}


def _partition(article):
    """b2 must reach the job after b1, and the copy a4 after its original a2: which of
    two copies is counted depends on arrival order, which Kafka keeps per partition."""
    return {"b1": 0, "b2": 0, "a2": 1, "a4": 1}.get(article.id)


def _unique(articles):
    """First article per story id (duplicate_of or id), in arrival order."""
    seen, unique = set(), []
    for article in articles:
        story = article.duplicate_of or article.id
        if story not in seen:
            seen.add(story)
            unique.append(article)
    return unique


def test_every_window_comes_out_exactly_once_with_exact_counts(outcome):
    windows, expected = outcome["windows"], outcome["expected"]
    keys = [window_key(w) for w in windows]
    assert len(keys) == len(set(keys)), "a window was emitted twice"
    assert set(keys) == set(expected), outcome["log"]
    for window in windows:
        want = expected[window_key(window)]
        assert (window.articles, window.negative, window.neutral, window.positive) == (
            want.articles,
            want.negative,
            want.neutral,
            want.positive,
        ), window_key(window)
        assert window.negative_ratio == pytest.approx(want.negative_ratio)
        assert window.mean_sentiment == pytest.approx(want.mean_sentiment)
        assert window.weighted_mean_sentiment == pytest.approx(want.weighted_mean_sentiment)


def test_hand_checked_windows(outcome):
    """A few windows worked out by hand, so the reference implementation is checked too."""
    by_key = {(w.window_start, w.window_seconds, w.dimension, w.key): w for w in outcome["windows"]}
    w0_all = by_key[(T0, 60, "all", "all")]
    # a1, a2, a3 and b2 (out of order); not the re-delivered a1, not the copy a4, not late l1.
    assert (w0_all.articles, w0_all.negative, w0_all.neutral, w0_all.positive) == (4, 2, 1, 1)
    assert w0_all.mean_sentiment == pytest.approx((-0.8 + 0.6 + 0.0 - 0.9) / 4)
    assert w0_all.weighted_mean_sentiment == pytest.approx(
        (-0.8 * 0.9 + 0.6 * 0.5 + 0.0 - 0.9) / (0.9 + 0.5 + 1.0 + 1.0)
    )
    aapl = by_key[(T0, 60, "ticker", "AAPL")]
    assert (aapl.articles, aapl.negative, aapl.positive) == (3, 2, 1)
    assert by_key[(T0, 60, "ticker", "MSFT")].articles == 1
    assert by_key[(T0, 60, "topic", "macro")].articles == 1
    w1_tsla = by_key[(T0 + timedelta(seconds=60), 60, "ticker", "TSLA")]
    assert (w1_tsla.articles, w1_tsla.negative, w1_tsla.positive) == (2, 1, 1)  # not l2
    w2_all = by_key[(T0 + timedelta(seconds=120), 60, "all", "all")]
    # Three movers, a5 and a6 (no tickers field); the re-delivered mover is dropped.
    assert w2_all.articles == 5
    hop = by_key[(T0, 120, "all", "all")]
    assert hop.articles == 6  # a1, a2, a3, b2, b1, b3


def test_windows_decode_as_sentiment_window_messages(outcome):
    windows = outcome["windows"]
    assert windows
    for window in windows:
        assert window.window_seconds in (60, 120)
        assert window.window_start.tzinfo is not None
        raw = messages.encode(window)
        assert messages.decode_window(raw) == window


def test_late_records_go_to_the_late_topic_with_the_watermark_they_missed(outcome):
    late = [messages.decode_late(v) for v in outcome["late"]]
    assert sorted(a.id for a in late) == ["l1", "l2"]
    for article in late:
        assert article.watermark_at >= T0 + timedelta(seconds=125)
        assert article.late_by_ms > 0
        assert article.source_topic and article.offset is not None


def test_invalid_records_go_to_the_dead_letter_topic(outcome):
    letters = sorted(
        (messages.decode_dead_letter(v) for v in outcome["dlq"]), key=lambda d: d.key or ""
    )
    assert [(d.key, d.stage, d.partition) for d in letters] == [
        ("x1", "aggregate", 1),
        ("x2", "aggregate", 2),
    ]
    assert letters[0].error.startswith("sentiment:")
    assert letters[1].error.startswith("confidence:")
    assert all(d.offset is not None and d.source_topic for d in letters)
