"""Replayer pacing and time handling, in-process with a clock the test moves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from pipeline.ingest.replay import Replayer, ReplayError, ReplayOptions, parse_time, read_rows
from pipeline.ingest.sink import ListSink
from pipeline.messages import article_id
from pipeline.metrics.definitions import ReplayMetrics

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
WALL = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self) -> None:
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return WALL + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.elapsed += seconds


def replay(rows, **options):
    sink, clock, registry = ListSink(), FakeClock(), CollectorRegistry()
    report = Replayer(sink, ReplayOptions(**options), ReplayMetrics(registry), clock=clock).run(
        enumerate(rows, start=1)
    )
    return sink.articles, report, clock, registry


def timed_rows(n: int, step_seconds: float = 60.0) -> list[dict]:
    return [
        {
            "text": f"Headline number {i} about markets",
            "published_at": (T0 + timedelta(seconds=i * step_seconds)).isoformat(),
        }
        for i in range(n)
    ]


def test_rate_spaces_records_evenly():
    articles, report, clock, registry = replay(timed_rows(5), rate_per_second=4.0)
    assert report.acknowledged == 5 and len(articles) == 5
    assert [(a.fetched_at - WALL).total_seconds() for a in articles] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (
        registry.get_sample_value("finsentry_ingest_articles_emitted_total", {"source": "replay"})
        == 5
    )


def test_speedup_divides_the_files_own_spacing_and_rebase_keeps_it():
    articles, report, clock, _ = replay(
        timed_rows(4, step_seconds=60), speedup=60.0, timestamps="rebase"
    )
    assert [(a.fetched_at - WALL).total_seconds() for a in articles] == [0.0, 1.0, 2.0, 3.0]
    # re-based: the first row happens at the start of the replay, spacing untouched
    assert [a.published_at for a in articles] == [WALL + timedelta(minutes=i) for i in range(4)]
    assert report.offset == WALL - T0


def test_keep_sends_the_files_times():
    articles, report, _, _ = replay(timed_rows(3), rate_per_second=0, timestamps="keep")
    assert [a.published_at for a in articles] == [T0 + timedelta(minutes=i) for i in range(3)]
    assert report.offset is None


def test_rate_zero_never_sleeps():
    _, _, clock, _ = replay(timed_rows(50), rate_per_second=0)
    assert clock.sleeps == []


def test_bad_rows_are_skipped_and_counted():
    rows = [
        {"text": "good one about Apple", "published_at": "2026-01-05T14:00:00Z"},
        {"text": "", "title": "  "},
        {"text": "bad time", "published_at": "yesterday-ish"},
        {},
        {
            "title": "Title only",
            "body": "and a body",
            "published_at": 1767621600,
            "tickers": "aapl; $msft",
            "source": "wire",
            "url": "https://Example.com/a?utm_source=x&b=1#frag",
        },
    ]
    articles, report, _, registry = replay(rows, rate_per_second=0, timestamps="keep")
    assert report.skipped == {"empty_text": 2, "bad_timestamp": 1}
    assert (
        registry.get_sample_value("finsentry_replay_rows_skipped_total", {"reason": "empty_text"})
        == 2
    )
    assert articles[0].tickers == ["AAPL"] and articles[0].title == "good one about Apple"
    last = articles[1]
    assert (last.source, last.tickers, last.url) == (
        "wire",
        ["AAPL", "MSFT"],
        "https://example.com/a?b=1",
    )
    assert last.id == article_id("https://example.com/a?b=1")
    assert last.published_at == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def test_speedup_needs_times_on_every_row():
    rows = [*timed_rows(2), {"text": "no time here"}]
    articles, report, _, _ = replay(rows, speedup=10)
    assert len(articles) == 2 and report.skipped == {"bad_timestamp": 1}


def test_ids_are_stable_and_salt_changes_them():
    first, _, _, _ = replay(timed_rows(3), rate_per_second=0)
    again, _, _, _ = replay(timed_rows(3), rate_per_second=0)
    salted, _, _, _ = replay(timed_rows(3), rate_per_second=0, id_salt="run-2")
    assert [a.id for a in first] == [a.id for a in again]
    assert not {a.id for a in first} & {a.id for a in salted}


def test_limit_and_option_validation():
    articles, _, _, _ = replay(timed_rows(10), rate_per_second=0, limit=3)
    assert len(articles) == 3
    for bad in ({}, {"rate_per_second": 1, "speedup": 2}, {"speedup": 0}, {"rate_per_second": -1}):
        with pytest.raises(ReplayError):
            ReplayOptions(**bad)


def test_parse_time_forms():
    assert parse_time("2026-01-05T14:00:00Z") == T0
    assert parse_time("2026-01-05T15:00:00+01:00") == T0
    assert parse_time("2026-01-05 14:00:00") == T0  # no offset: UTC
    assert parse_time(T0.timestamp()) == T0
    assert parse_time(str(int(T0.timestamp() * 1000))) == T0
    assert parse_time("") is None


def test_read_rows_csv_and_jsonl(tmp_path):
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(
        'text,published_at\n"a, quoted ""text""",2026-01-05T14:00:00Z\n', encoding="utf-8"
    )
    assert list(read_rows(csv_file)) == [
        (2, {"text": 'a, quoted "text"', "published_at": "2026-01-05T14:00:00Z"})
    ]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(json.dumps({"text": "x"}) + "\nnot json\n\n[1]\n", encoding="utf-8")
    assert list(read_rows(jsonl)) == [(1, {"text": "x"}), (2, {}), (4, {})]


def test_a_stall_shifts_the_schedule_instead_of_bursting():
    clock, registry = FakeClock(), CollectorRegistry()

    class StallingSink(ListSink):
        def send(self, article):
            if not self._pending and not self.articles:
                clock.elapsed += 2.0  # the first send blocks for 2 s
            super().send(article)

    sink = StallingSink()
    Replayer(sink, ReplayOptions(rate_per_second=10.0), ReplayMetrics(registry), clock=clock).run(
        enumerate(timed_rows(4), start=1)
    )
    sent = [(a.fetched_at - WALL).total_seconds() for a in sink.articles]
    assert sent[1] == pytest.approx(2.0) and [
        b - a for a, b in zip(sent[1:], sent[2:], strict=False)
    ] == pytest.approx([0.1, 0.1])


def test_out_of_order_rows_do_not_shift_the_schedule():
    rows = timed_rows(4, step_seconds=60)
    rows[1], rows[2] = rows[2], rows[1]  # file order: 0, 120, 60, 180 s
    articles, _, _, _ = replay(rows, speedup=60.0)
    assert [(a.fetched_at - WALL).total_seconds() for a in articles] == [0.0, 2.0, 2.0, 3.0]
