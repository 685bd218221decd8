"""What the source idle timeout does when partitions pause and resume one at a time,
as they do after a broker outage (docs/aggregate.md, "idle partitions").

The story (seconds after T0, one-minute tumbling windows, 5 s out-of-orderness): one
article at 5 on each of the three partitions; a pause of PAUSE_S wall seconds with
nothing; then partition 0's backlog (20 ... 170); a short gap; then partition 1's
backlog (30, 45), older than partition 0's newest; then a watermark mover at 300 on
every partition.

- idle timeout shorter than the pause: every partition goes idle, partition 0 alone
  moves the watermark to 165 s, and partition 1's articles arrive late;
- idle timeout longer than the pause: partitions 1 and 2 hold the watermark at 0 s,
  nothing is late and every article is in its window.
"""

from __future__ import annotations

import time
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
)
from tests.aggregate.conftest import make_env

pytestmark = [pytest.mark.integration, pytest.mark.flink]

PAUSE_S = 8.0
FIRST = [scored(f"s{p}", 5) for p in range(3)]
BACKLOG_0 = [scored(f"b{i}", at) for i, at in enumerate((20, 50, 80, 110, 140, 170))]
BACKLOG_1 = [scored("r1", 30, sentiment="negative", score=-0.9),
             scored("r2", 45, sentiment="negative", score=-0.9)]


def run_story(stack, run_dir, idle_timeout_ms: int, counted):
    """Play the story through a fresh job; what came out: (expected windows, windows,
    ids in the late topic, the job's log tail)."""
    env = make_env(stack, run_dir, source_idle_timeout_ms=idle_timeout_ms, hopping_window_ms=0)
    kafka, settings = env.kafka, env.settings
    with AggregateProcess(kafka, settings, run_dir=env.run_dir) as job:
        job.wait_running()
        produce(kafka, FIRST, partition_of=lambda a: int(a.id[1:]))
        time.sleep(PAUSE_S)
        produce(kafka, BACKLOG_0, partition_of=lambda a: 0)
        time.sleep(3.0)  # many watermark intervals (200 ms): partition 0's watermark is out
        produce(kafka, BACKLOG_1, partition_of=lambda a: 1)
        produce(kafka, watermark_movers(kafka, 300, "wm"))
        settle = 3 * settings.checkpoint_interval_ms / 1000
        expected = expected_windows(counted, settings, until=T0 + timedelta(seconds=300))
        windows = read_windows(kafka, expected=len(expected), timeout_seconds=120,
                               settle_seconds=settle)
        late = read_topic(kafka, settings.topic_late, expected=0, timeout_seconds=30,
                          settle_seconds=settle)
        return expected, windows, [messages.decode_late(v).id for v in late], job.log_tail()


def all_window_counts(windows) -> dict:
    return {w.window_start: w.articles for w in windows if w.dimension == "all"}


def test_partitions_resuming_after_the_idle_timeout_deliver_old_articles_late(stack, tmp_path):
    expected, windows, late, log = run_story(stack, tmp_path, 2_000, FIRST + BACKLOG_0)
    assert sorted(late) == ["r1", "r2"], log
    assert all_window_counts(windows) == all_window_counts(expected.values())


def test_an_idle_timeout_longer_than_the_pause_keeps_every_article_in_its_window(stack, tmp_path):
    expected, windows, late, log = run_story(stack, tmp_path, 60_000,
                                             FIRST + BACKLOG_0 + BACKLOG_1)
    assert late == [], log
    assert all_window_counts(windows) == all_window_counts(expected.values())
    assert all_window_counts(windows)[T0] == 7  # s0-s2, b0, b1, r1, r2
