"""The replayer against the real broker: rate, speed-up, re-based times, the demo stream's truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.ingest.demo import DEMO_STREAM, truth_path
from pipeline.ingest.replay import ReplayOptions
from pipeline.ingest.service import run_replay
from pipeline.messages import article_id
from pipeline.settings import ReplaySettings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
SETTINGS = ReplaySettings(register_target=False)


def write_rows(path, n: int, step_seconds: float) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            when = T0 + timedelta(seconds=i * step_seconds)
            handle.write(
                json.dumps(
                    {
                        "id": f"row-{i}",
                        "text": f"Stocks move, update {i}",
                        "published_at": when.isoformat(),
                        "source": "file",
                    }
                )
                + "\n"
            )


def by_offset(records):
    return sorted((article for _key, article, _ts in records), key=lambda a: a.fetched_at)


def test_rate_against_the_broker(tmp_path, kafka_settings, raw_reader):
    path = tmp_path / "rows.jsonl"
    write_rows(path, 10, step_seconds=3600)
    report = run_replay(
        path,
        ReplayOptions(rate_per_second=20.0, timestamps="keep"),
        settings=SETTINGS,
        kafka=kafka_settings,
    )
    assert (report.acknowledged, report.failed) == (10, 0)
    records = raw_reader(kafka_settings, expected=10)
    assert sorted(key for key, _a, _ts in records) == sorted(f"row-{i}" for i in range(10))
    articles = by_offset(records)
    start = articles[0].fetched_at
    for i, article in enumerate(articles):  # schedule-based pacing: record i never before i / rate
        assert (article.fetched_at - start).total_seconds() >= i / 20.0 - 0.01
    assert [a.published_at for a in articles] == [T0 + timedelta(hours=i) for i in range(10)]
    assert (articles[-1].fetched_at - start).total_seconds() < 10  # sanity, not a speed claim


def test_speedup_and_rebase_against_the_broker(tmp_path, kafka_settings, raw_reader):
    path = tmp_path / "rows.jsonl"
    write_rows(path, 4, step_seconds=60)
    before = datetime.now(UTC)
    report = run_replay(
        path,
        ReplayOptions(speedup=120.0, timestamps="rebase"),
        settings=SETTINGS,
        kafka=kafka_settings,
    )
    assert report.acknowledged == 4
    articles = by_offset(raw_reader(kafka_settings, expected=4))
    start = articles[0].fetched_at
    for i, article in enumerate(articles):  # 60 s of file time -> 0.5 s of wall time
        assert (article.fetched_at - start).total_seconds() >= i * 0.5 - 0.01
        assert article.published_at - articles[0].published_at == timedelta(
            minutes=i
        )  # spacing kept
    assert before - timedelta(seconds=1) <= articles[0].published_at <= articles[0].fetched_at
    assert report.offset == articles[0].published_at - T0


def test_demo_stream_ground_truth_survives_replay(tmp_path, kafka_settings, raw_reader):
    truth = json.loads(truth_path(DEMO_STREAM).read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in DEMO_STREAM.read_text(encoding="utf-8").splitlines()]
    moved_path = tmp_path / "truth.replayed.json"
    report = run_replay(
        DEMO_STREAM,
        ReplayOptions(rate_per_second=0, timestamps="rebase", id_salt="t1"),
        settings=SETTINGS,
        kafka=kafka_settings,
        truth=truth_path(DEMO_STREAM),
        truth_out=moved_path,
    )
    assert report.acknowledged == len(rows) == truth["articles"]
    moved = json.loads(moved_path.read_text(encoding="utf-8"))
    records = {key: article for key, article, _ts in raw_reader(kafka_settings, expected=len(rows))}
    assert len(records) == len(rows)
    assert set(moved["spike"]["ids"]) == {
        article_id(source="t1", guid=i) for i in truth["spike"]["ids"]
    }

    start = datetime.fromisoformat(moved["spike"]["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(moved["spike"]["end"].replace("Z", "+00:00"))
    assert end - start == timedelta(minutes=truth["spec"]["spike_minutes"])
    spike = [records[i] for i in moved["spike"]["ids"]]
    assert len(spike) == truth["spike"]["articles"] > 0
    assert all(start <= a.published_at < end for a in spike)
    # the file's spacing survives: every record moved by the same offset
    offset = timedelta(seconds=moved["replay_offset_seconds"])
    for row in rows[:50]:
        article = records[article_id(source="t1", guid=row["id"])]
        assert (
            article.published_at
            == datetime.fromisoformat(row["published_at"].replace("Z", "+00:00")) + offset
        )
