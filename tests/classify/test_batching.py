"""Micro-batches close on size, on the maximum wait after their first record, or on stop."""

from __future__ import annotations

from pipeline.classify.batching import next_batch
from tests.classify.helpers import FakeClock, ListConsumer, Record


def _records(n: int, start: int = 0) -> list[Record]:
    return [Record(value=b"x", offset=i) for i in range(start, start + n)]


def test_a_batch_closes_when_full():
    consumer = ListConsumer([_records(10), _records(10, 10)])
    batch = next_batch(consumer, batch_size=8, max_wait_ms=1000)
    assert [r.offset for r in batch] == list(range(8))
    assert consumer.calls[0][1] == 8  # never asks for more than fits


def test_a_batch_closes_max_wait_after_its_first_record():
    clock = FakeClock()
    # One record per poll, each poll costs 20 ms: with 50 ms max wait the batch
    # holds the first record plus what arrived within 50 ms of it.
    consumer = ListConsumer([_records(1, i) for i in range(10)], clock=clock, poll_cost=0.02)
    batch = next_batch(consumer, batch_size=100, max_wait_ms=50, clock=clock)
    assert 2 <= len(batch) <= 4
    assert all(timeout <= 50 for timeout, _ in consumer.calls[1:])


def test_an_idle_consumer_returns_an_empty_batch_after_one_poll():
    consumer = ListConsumer([])
    assert next_batch(consumer, batch_size=8, max_wait_ms=50, idle_poll_ms=10) == []
    assert len(consumer.calls) == 1


def test_stop_closes_the_batch_with_what_it_holds():
    polls = [_records(3), _records(3, 3), _records(3, 6)]
    consumer = ListConsumer(polls)
    calls = iter([False, False, True])
    batch = next_batch(consumer, batch_size=100, max_wait_ms=10_000, stop=lambda: next(calls))
    assert [r.offset for r in batch] == [0, 1, 2, 3, 4, 5]


def test_zero_max_wait_takes_what_one_poll_returns():
    consumer = ListConsumer([_records(5), _records(5, 5)])
    assert len(next_batch(consumer, batch_size=100, max_wait_ms=0)) == 5
