"""The demo-stream builder: deterministic, and its ground truth matches its rows."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timedelta

import pytest
from typer.testing import CliRunner

from models.labels import TOPIC_NAMES
from pipeline.ingest.demo import (
    DEMO_STREAM,
    DemoDataError,
    DemoSpec,
    build_demo_stream,
    resolve_data_dir,
    truth_path,
    write_demo_stream,
)
from pipeline.settings import REPO_ROOT

OIL = TOPIC_NAMES.index("Energy | Oil")


def t(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture
def data_dir(tmp_path):
    """A tiny held-out split: 200 topic rows over all topics, 120 sentiment rows."""
    topic_rows = [(f"General market note number {i} on topic {i % 20}", i % 20) for i in range(200)]
    topic_rows += [
        (f"Crude oil prices fall {i} percent after OPEC meeting", OIL) for i in range(15)
    ]
    topic_rows += [(f"OPEC keeps oil output steady, meeting {i}", OIL) for i in range(15)]
    sentiment_rows = [(f"Oil slumps as crude stocks build, report {i}", 0) for i in range(10)]
    sentiment_rows += [
        (f"$XOM shares slide after Exxon Mobil warns, note {i}", 0) for i in range(10)
    ]
    sentiment_rows += [(f"Apple rallies on strong iPhone demand {i}", 1) for i in range(50)]
    sentiment_rows += [(f"Markets wait for data, session {i}", 2) for i in range(50)]
    for name, rows in (
        ("heldout_topic.csv", topic_rows),
        ("heldout_sentiment.csv", sentiment_rows),
    ):
        with (tmp_path / name).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return tmp_path


SMALL = dict(
    duration_minutes=10,
    rate_per_minute=6,
    spike_start_minute=6,
    spike_minutes=2,
    spike_per_minute=4,
    key_rate_per_minute=1,
)


def test_truth_matches_the_rows(data_dir):
    spec = DemoSpec(**SMALL)
    rows, truth = build_demo_stream(spec, data_dir)
    spike = truth["spike"]
    assert (spike["dimension"], spike["key"]) == ("topic", "Energy | Oil")
    assert (t(spike["start"]), t(spike["end"])) == (spec.spike_start, spec.spike_end)
    spiked = [r for r in rows if r["spike"]]
    assert len(spiked) == spike["articles"] == 8 and [r["id"] for r in spiked] == spike["ids"]
    assert all(spec.spike_start <= t(r["published_at"]) < spec.spike_end for r in spiked)
    assert all(
        r["truth_sentiment"] == "negative" and r["truth_topic"] == "Energy | Oil" for r in spiked
    )
    times = [t(r["published_at"]) for r in rows]
    assert (
        times == sorted(times)
        and spec.start <= times[0]
        and times[-1] < spec.start + timedelta(minutes=10)
    )
    assert len({r["text"] for r in rows}) == len(rows) == truth["articles"]  # no text used twice
    assert truth["data"]["heldout"] is True


def test_same_seed_same_stream_other_seed_other_stream(data_dir):
    first = build_demo_stream(DemoSpec(**SMALL), data_dir)
    assert build_demo_stream(DemoSpec(**SMALL), data_dir) == first
    assert build_demo_stream(DemoSpec(seed=8, **SMALL), data_dir)[0] != first[0]


def test_ticker_spike_rewrites_mentions_to_the_key(data_dir):
    rows, truth = build_demo_stream(
        DemoSpec(spike_dimension="ticker", spike_key="tsla", **SMALL), data_dir
    )
    spiked = [r for r in rows if r["spike"]]
    assert truth["spike"]["key"] == "TSLA" and truth["spike"]["synthetic_rewrite"] is True
    assert spiked and all("TSLA" in r["tickers"] for r in spiked)
    assert all("$TSLA" in r["text"] or "Tesla" in r["text"] for r in spiked)


def test_not_enough_texts_is_a_clear_error(data_dir):
    with pytest.raises(DemoDataError, match="lower spike_per_minute"):
        build_demo_stream(DemoSpec(**{**SMALL, "spike_per_minute": 40}), data_dir)
    with pytest.raises(DemoDataError, match="spike must end"):
        DemoSpec(**{**SMALL, "spike_start_minute": 9})
    with pytest.raises(DemoDataError, match="unknown topic"):
        build_demo_stream(DemoSpec(**{**SMALL, "spike_key": "Crypto"}), data_dir)


def test_held_out_split_is_preferred(data_dir):
    (data_dir / "twitter_topic_train.csv").write_text("text,label\n", encoding="utf-8")
    (data_dir / "twitter_sentiment_train.csv").write_text("text,label\n", encoding="utf-8")
    assert resolve_data_dir(data_dir) == data_dir
    _rows, truth = build_demo_stream(DemoSpec(**SMALL), data_dir)
    assert set(truth["data"]["sha256"]) == {"heldout_topic.csv", "heldout_sentiment.csv"}


def test_write_round_trip(data_dir, tmp_path):
    rows, truth = build_demo_stream(DemoSpec(**SMALL), data_dir)
    sidecar = write_demo_stream(rows, truth, tmp_path / "out" / "s.jsonl")
    assert sidecar == tmp_path / "out" / "s.truth.json" == truth_path(tmp_path / "out" / "s.jsonl")
    lines = (tmp_path / "out" / "s.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert json.loads(sidecar.read_text(encoding="utf-8")) == truth


def test_bundled_demo_stream_is_what_the_cli_builds(tmp_path):
    """The committed stream is reproducible from the committed held-out data with the defaults."""
    from pipeline.cli import app

    truth = json.loads(truth_path(DEMO_STREAM).read_text(encoding="utf-8"))
    data = REPO_ROOT / truth["data"]["dir"]
    current = {
        name: hashlib.sha256((data / name).read_bytes()).hexdigest()
        for name in truth["data"]["sha256"]
    }
    assert current == truth["data"]["sha256"], (
        "models/data changed since the demo stream was built; regenerate it with "
        "`finsentry demo-stream --out pipeline/ingest/data/demo_stream.jsonl`"
    )
    out = tmp_path / "demo.jsonl"
    result = CliRunner().invoke(app, ["demo-stream", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == DEMO_STREAM.read_bytes()
    assert truth_path(out).read_bytes() == truth_path(DEMO_STREAM).read_bytes()
    spike = truth["spike"]
    rows = [json.loads(line) for line in DEMO_STREAM.read_text(encoding="utf-8").splitlines()]
    in_window = [r for r in rows if t(spike["start"]) <= t(r["published_at"]) < t(spike["end"])]
    assert (
        {r["id"] for r in rows if r["spike"]} == set(spike["ids"]) <= {r["id"] for r in in_window}
    )
    # a calm baseline long enough for a trailing baseline, then a clear spike on the key
    assert t(spike["start"]) - t(truth["stream_start"]) >= timedelta(minutes=20)
    key_rows = [r for r in rows if r["truth_topic"] == spike["key"]]
    calm = [r for r in key_rows if t(r["published_at"]) < t(spike["start"])]
    assert len(calm) >= 20 and spike["articles"] >= 30
