"""Kill the job mid-stream (SIGKILL, no savepoint), restart it from its last retained
checkpoint, and check that every window comes out exactly once with exact counts; then
stop it with a savepoint (SIGTERM) and start it again from that savepoint, as for an
upgrade.

What makes this a real test of exactly-once: the killed job leaves an open Kafka
transaction holding windows it had emitted but not committed, and offsets it had
read past its last checkpoint. The restarted job must abort that transaction
(read_committed consumers would otherwise block or see doubles), re-read from the
checkpointed offsets with the de-duplication state of that checkpoint, and emit
the uncommitted windows once.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from pipeline.aggregate.checkpoints import retained_checkpoints
from pipeline.aggregate.testing import (
    FINSENTRY_AGGREGATE,
    T0,
    AggregateProcess,
    expected_windows,
    produce,
    read_windows,
    scored,
    watermark_movers,
    window_key,
)
from pipeline.messages import decode_scored

pytestmark = [pytest.mark.integration, pytest.mark.flink, pytest.mark.slow]

TOPICS = ("earnings", "macro")
TICKERS = ("AAPL", "MSFT", "TSLA", "NVDA")
SENTIMENTS = ("negative", "neutral", "positive")


def articles(prefix: str, start_seconds: int, end_seconds: int, count: int, rng: random.Random):
    """``count`` articles with event times in [start, end), in time order."""
    out = []
    for i in range(count):
        at = start_seconds + (end_seconds - start_seconds) * i / count
        sentiment = rng.choice(SENTIMENTS)
        score = {"negative": -0.6, "neutral": 0.0, "positive": 0.6}[sentiment] + rng.uniform(
            -0.3, 0.3
        )
        out.append(
            scored(
                f"{prefix}{i}",
                at,
                topic=rng.choice(TOPICS),
                sentiment=sentiment,
                score=round(score, 3),
                confidence=round(rng.uniform(0.3, 1.0), 3),
                tickers=rng.sample(TICKERS, rng.randint(0, 2)),
            )
        )
    return out


def test_kill_restart_and_savepoint_neither_lose_nor_double_windows(aggregate_env):
    env = aggregate_env
    kafka, settings = env.kafka, env.settings
    rng = random.Random(6)
    phase_a = articles("A", 0, 120, 60, rng)  # windows ending 60, 120
    phase_b = articles("B", 126, 250, 120, rng)  # after the watermark of 125; closes 180, 240
    phase_c = articles("C", 250, 350, 60, rng) + phase_b[-20:]  # while down; re-sends 20 B ids
    movers = [watermark_movers(kafka, at, f"wm{at}") for at in (130, 250, 370)]

    # The first run goes through the main CLI, `finsentry aggregate`; the others run the
    # same command alone (python -m pipeline.aggregate).
    first = AggregateProcess(
        kafka, settings, run_dir=env.run_dir, name="first", command=FINSENTRY_AGGREGATE
    ).start()
    try:
        first.wait_running()
        produce(kafka, phase_a)
        produce(kafka, movers[0])
        done_a = expected_windows(phase_a, settings, until=T0 + timedelta(seconds=120))
        seen = read_windows(kafka, expected=len(done_a), timeout_seconds=120)
        assert len(seen) >= len(done_a), first.log_tail()
        assert retained_checkpoints(settings.checkpoint_dir), "no checkpoint was retained"
        produce(kafka, phase_b)
        produce(kafka, movers[1])
        # Kill as soon as the windows ending at 180 s have been written into the sink's
        # open transaction: they are (almost always) not committed yet.
        done_b = expected_windows(phase_a + phase_b, settings, until=T0 + timedelta(seconds=180))
        uncommitted = read_windows(
            kafka, expected=len(done_b), timeout_seconds=120, committed=False
        )
        assert len(uncommitted) >= len(done_b), first.log_tail()
    finally:
        first.kill()
    committed_at_kill = len(read_windows(kafka, expected=0, timeout_seconds=2))
    produce(kafka, phase_c)

    second = AggregateProcess(kafka, settings, run_dir=env.run_dir, name="second").start()
    try:
        status = second.wait_running()
        assert status["restored_from"], second.log_tail()
        assert "/chk-" in status["restored_from"]
        produce(kafka, movers[2])
        counted = (
            phase_a
            + phase_b
            + phase_c[:60]
            + [decode_scored(m) for batch in movers[:2] for _, m in batch]
        )
        expected = expected_windows(counted, settings, until=T0 + timedelta(seconds=360))
        windows = read_windows(
            kafka,
            expected=len(expected),
            timeout_seconds=150,
            settle_seconds=3 * settings.checkpoint_interval_ms / 1000,
        )
        log = second.log_tail()
        written = read_windows(kafka, expected=len(expected), timeout_seconds=5, committed=False)
        # For the record (pytest -rA): how much the killed job had emitted but not committed.
        print(
            f"windows committed at kill: {committed_at_kill}; records written in all, "
            f"aborted included: {len(written)}; committed after the restart: {len(windows)}"
        )
        assert_exactly(windows, expected, log)
        # An upgrade: stop with a savepoint (SIGTERM), then start from that savepoint.
        assert second.stop() == 0, second.log_tail()
        savepoint = second.status().get("savepoint")
        assert savepoint and "/savepoint-" in savepoint, second.log_tail()
    finally:
        second.kill()

    phase_d = articles("D", 372, 470, 40, rng)
    produce(kafka, phase_d)
    third = AggregateProcess(
        kafka, settings, run_dir=env.run_dir, name="third", restore=savepoint
    ).start()
    try:
        assert third.wait_running()["restored_from"].endswith(savepoint.split("/")[-1])
        produce(kafka, watermark_movers(kafka, 490, "wm490"))
        counted += phase_d + [decode_scored(m) for _, m in movers[2]]
        expected = expected_windows(counted, settings, until=T0 + timedelta(seconds=480))
        windows = read_windows(
            kafka,
            expected=len(expected),
            timeout_seconds=150,
            settle_seconds=3 * settings.checkpoint_interval_ms / 1000,
        )
        log = third.log_tail()
    finally:
        third.kill()
    assert_exactly(windows, expected, log)


def assert_exactly(windows, expected, log: str) -> None:
    """Every expected window once, with exact counts, and nothing else."""
    keys = [window_key(w) for w in windows]
    doubled = {k for k in keys if keys.count(k) > 1}
    assert not doubled, f"windows emitted twice: {sorted(doubled, key=str)[:5]}"
    assert set(keys) == set(expected), f"missing {len(set(expected) - set(keys))}\n{log}"
    for window in windows:
        want = expected[window_key(window)]
        assert (window.articles, window.negative, window.neutral, window.positive) == (
            want.articles,
            want.negative,
            want.neutral,
            want.positive,
        ), window_key(window)
        assert window.mean_sentiment == pytest.approx(want.mean_sentiment)
