"""The exporter's board: latest window per key, expiry, top-N tickers, exact exposition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from pipeline.messages import SentimentWindow, decode_window, encode
from pipeline.metrics.definitions import ExporterMetrics
from pipeline.metrics.exporter import WindowBoard, prometheus_duration
from pipeline.settings import ExporterSettings

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def window(
    key: str,
    minute: int,
    articles: int = 10,
    negative: int = 2,
    *,
    dimension: str = "topic",
    length_s: int = 60,
) -> SentimentWindow:
    start = T0 + timedelta(minutes=minute)
    return SentimentWindow(
        window_start=start,
        window_end=start + timedelta(seconds=length_s),
        dimension=dimension,
        key=key,
        articles=articles,
        negative=negative,
        neutral=articles - negative,
        positive=0,
        negative_ratio=negative / articles,
        mean_sentiment=-negative / articles,
    )


def board(**settings) -> tuple[WindowBoard, CollectorRegistry]:
    registry = CollectorRegistry()
    return WindowBoard(ExporterMetrics(registry), ExporterSettings(**settings)), registry


def samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == name
    }


def test_prometheus_duration():
    assert [prometheus_duration(s) for s in (45, 60, 900, 5400, 86400)] == [
        "45s",
        "1m",
        "15m",
        "1h30m",
        "1d",
    ]


def test_exact_exposition_of_one_window():
    b, registry = board()
    b.apply_all([decode_window(encode(window("Energy", 0, articles=20, negative=5)))])
    text = generate_latest(registry).decode()
    labels = 'dimension="topic",key="Energy",window="1m"'
    for line in (
        f"finsentry_window_articles{{{labels}}} 20.0",
        f"finsentry_window_negative_articles{{{labels}}} 5.0",
        f"finsentry_window_negative_ratio{{{labels}}} 0.25",
        f"finsentry_window_mean_sentiment{{{labels}}} -0.25",
        f"finsentry_window_end_timestamp_seconds{{{labels}}} 1.79586726e+09",
        'finsentry_exporter_windows_consumed_total{dimension="topic"} 1.0',
        'finsentry_exporter_keys{dimension="topic"} 1.0',
    ):
        assert line in text, line


def test_latest_window_wins_and_older_ones_are_ignored():
    b, registry = board()
    b.apply_all([window("Energy", 1, negative=3), window("Energy", 0, negative=9)])
    assert samples(registry, "finsentry_window_negative_articles") == {
        (("dimension", "topic"), ("key", "Energy"), ("window", "1m")): 3.0
    }
    assert samples(registry, "finsentry_exporter_windows_ignored_total") == {
        (("dimension", "topic"), ("reason", "out_of_order")): 1.0
    }
    # An updated record of the same window replaces it.
    b.apply_all([window("Energy", 1, negative=4)])
    assert list(samples(registry, "finsentry_window_negative_articles").values()) == [4.0]


def test_each_window_length_is_its_own_series():
    b, registry = board()
    b.apply_all([window("Energy", 0), window("Energy", 0, length_s=900, articles=100, negative=10)])
    assert sorted(k[2][1] for k in samples(registry, "finsentry_window_articles")) == ["15m", "1m"]


def test_a_key_without_new_windows_expires():
    b, registry = board(stale_after_windows=2)
    b.apply_all([window("Quiet", 0), window("Busy", 0)])
    b.apply_all([window("Busy", m) for m in range(1, 3)])
    assert {k[1][1] for k in samples(registry, "finsentry_window_articles")} == {"Busy", "Quiet"}
    b.apply_all([window("Busy", 3)])  # Quiet is now 3 windows behind
    assert {k[1][1] for k in samples(registry, "finsentry_window_articles")} == {"Busy"}
    assert samples(registry, "finsentry_exporter_keys")[(("dimension", "topic"),)] == 1.0


def test_only_the_top_n_tickers_by_volume_have_series():
    b, registry = board(top_n_tickers=2)
    b.apply_all(
        [
            window("AAA", 0, articles=50, dimension="ticker"),
            window("BBB", 0, articles=30, dimension="ticker"),
            window("CCC", 0, articles=10, dimension="ticker"),
            window("Energy", 0, articles=5),
        ]
    )
    shown = {k[1][1] for k in samples(registry, "finsentry_window_articles")}
    assert shown == {"AAA", "BBB", "Energy"}
    assert samples(registry, "finsentry_exporter_tickers_hidden")[()] == 1.0
    # CCC's volume overtakes BBB: the series swap, nothing else changes.
    b.apply_all(
        [
            window("CCC", 1, articles=60, dimension="ticker"),
            window("AAA", 1, articles=50, dimension="ticker"),
        ]
    )
    shown = {k[1][1] for k in samples(registry, "finsentry_window_articles") if k[0][1] == "ticker"}
    assert shown == {"AAA", "CCC"}


def test_hopping_windows_that_began_before_the_data_are_not_shown():
    """A fresh stream fills its 15m windows gradually; those partial windows would
    look like a climbing ratio, so only windows inside the data are shown."""
    b, registry = board()
    first_tumbling = window("all", 10, dimension="all")
    partial = window("Energy", -4, negative=9, length_s=900)  # began 4 minutes before the data
    whole = window("Energy", 10, negative=3, length_s=900)
    b.apply_all([partial, first_tumbling])
    assert samples(registry, "finsentry_exporter_windows_ignored_total") == {
        (("dimension", "topic"), ("reason", "partial")): 1.0
    }
    b.apply_all([whole])
    energy = (("dimension", "topic"), ("key", "Energy"), ("window", "15m"))
    assert samples(registry, "finsentry_window_negative_articles")[energy] == 3.0
