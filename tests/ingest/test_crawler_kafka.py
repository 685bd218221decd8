"""The crawler against a local fixture web site and the real broker.

Fixture site: RSS with an ETag (304 on re-poll), Atom, malformed XML, a feed
that robots.txt disallows, a feed that times out, one story syndicated by three
sites; items linking to a private address, a robots-disallowed page, a
redirect loop, a 50 MB page, a mislabelled Latin-1 page, an undated and a
future-dated story.
"""

from __future__ import annotations

import asyncio

import httpcore
import pytest
from prometheus_client import CollectorRegistry

from pipeline.ingest.canonical import url_id
from pipeline.ingest.crawler import Crawler
from pipeline.ingest.sink import KafkaSink
from pipeline.ingest.sources import load_sources
from pipeline.ingest.testing import FixtureServer
from pipeline.metrics.definitions import CrawlerMetrics
from pipeline.settings import CrawlerSettings
from tests.ingest.sites import FEEDS_YAML, RECENT, build_routes

pytestmark = pytest.mark.integration


def value(registry: CollectorRegistry, name: str, **labels) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def connections(monkeypatch):
    """Every (host, port) the crawler opened a TCP connection to."""
    opened: list[tuple[str, int]] = []
    original = httpcore.AnyIOBackend.connect_tcp

    async def recording(self, host, port, *args, **kwargs):
        opened.append((host, port))
        return await original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", recording)
    return opened


def crawl_settings(tmp_path) -> CrawlerSettings:
    return CrawlerSettings(
        state_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
        allow_loopback=True,
        per_host_interval_seconds=0.0,
        per_host_concurrency=4,
        connect_timeout_seconds=1.0,
        read_timeout_seconds=0.5,
        request_deadline_seconds=5.0,
        retries=1,
        backoff_base_seconds=0.01,
        max_page_bytes=256 * 1024,
    )


async def crawl_twice(settings, sources, kafka_settings):
    """Two polls by one crawler process; a fresh metrics registry for each poll."""
    registries = [CollectorRegistry(), CollectorRegistry()]
    sink = KafkaSink(kafka_settings)
    try:
        async with Crawler(settings, sources, sink, CrawlerMetrics(registries[0])) as crawler:
            results = await crawler.run_once()
            crawler.metrics = CrawlerMetrics(registries[1])
            again = await crawler.run_once()  # same process: ETag -> 304, the rest already seen
    finally:
        sink.close()
    return registries, results, again


def test_crawl_fixture_site_into_news_raw(tmp_path, kafka_settings, raw_reader, connections):
    routes = {}
    with FixtureServer(routes) as server:
        base = f"http://127.0.0.1:{server.port}"
        routes.update(build_routes(base))
        feeds = tmp_path / "feeds.yaml"
        feeds.write_text(FEEDS_YAML.format(base=base))
        sources = load_sources(feeds)
        settings = crawl_settings(tmp_path)

        (registry, registry_again), results, again = asyncio.run(
            crawl_twice(settings, sources, kafka_settings)
        )
        records = raw_reader(kafka_settings, expected=12)

        # --- exactly these stories landed, keyed by id -----------------------------------
        by_id = {key: article for key, article, _ts in records}
        assert len(records) == 12 and len(by_id) == 12
        assert all(key == article.id for key, article, _ts in records)
        expected_links = [
            "/articles/oil.html",
            "/blocked/story.html",
            "/loop/a",
            "/huge.html",
            "/latin1.html",
            "/articles/undated.html",
            "/articles/future.html",
            "/atom/apple.html",
            "/atom/msft.html",
            "/site-a/story.html",
            "/site-b/story.html",
            "/site-c/story.html",
        ]
        assert set(by_id) == {url_id(base + link) for link in expected_links}
        assert url_id("http://10.0.0.1/admin") not in by_id

        oil = by_id[url_id(base + "/articles/oil.html")]
        assert oil.url == base + "/articles/oil.html"  # tracking parameters removed
        assert oil.source == "fixture-rss" and oil.lang == "en"
        assert "OPEC members signalled higher supply" in oil.body  # page text, not the summary
        assert "Home | Markets" not in oil.body  # navigation stripped
        assert oil.tickers == ["XOM"]
        assert oil.published_at == RECENT  # the feed's pubDate (+02:00), in UTC
        blocked = by_id[url_id(base + "/blocked/story.html")]
        assert blocked.body.startswith("Tesla Inc shares slid") and blocked.tickers == ["TSLA"]
        assert by_id[url_id(base + "/loop/a")].body.startswith("A page that redirects forever")
        assert by_id[url_id(base + "/huge.html")].body.startswith("A page of fifty megabytes")
        assert "caf\u00e9 chain reported results" in by_id[url_id(base + "/latin1.html")].body
        undated = by_id[url_id(base + "/articles/undated.html")]
        assert undated.published_at == undated.fetched_at and undated.tickers == ["MSFT"]
        future = by_id[url_id(base + "/articles/future.html")]
        assert future.published_at == future.fetched_at
        assert by_id[url_id(base + "/atom/apple.html")].tickers == ["AAPL"]
        assert by_id[url_id(base + "/atom/msft.html")].tickers == ["JPM", "MSFT"]

        # --- the syndicated story: one original, two marked duplicates -------------------
        stories = [
            by_id[url_id(f"{base}/{site}/story.html")] for site in ("site-a", "site-b", "site-c")
        ]
        originals = [s for s in stories if s.duplicate_of is None]
        assert len(originals) == 1
        assert sorted(s.duplicate_of for s in stories if s.duplicate_of) == [originals[0].id] * 2
        assert all(a.duplicate_of is None for a in by_id.values() if a not in stories)

        # --- refused, counted, never connected --------------------------------------------
        assert {host for host, _port in connections} == {"127.0.0.1"}
        assert (
            "/blocked/story.html" not in server.paths()
            and "/blocked/feed.xml" not in server.paths()
        )
        assert all("finsentry" in r.headers["user-agent"] for r in server.requests)
        assert value(registry, "finsentry_crawler_refused_total", reason="private_address") == 1
        assert value(registry, "finsentry_crawler_refused_total", reason="robots") == 2
        for reason in ("malformed_feed", "timeout", "redirect_loop", "too_large", "bad_charset"):
            assert value(registry, "finsentry_crawler_errors_total", reason=reason) == 1, reason
        assert value(registry, "finsentry_crawler_duplicates_total", kind="near") == 2
        assert value(registry, "finsentry_crawler_dates_replaced_total", reason="missing") == 1
        assert value(registry, "finsentry_crawler_dates_replaced_total", reason="future") == 1
        assert value(registry, "finsentry_ingest_articles_emitted_total", source="fixture-rss") == 7
        assert (
            value(registry, "finsentry_ingest_articles_emitted_total", source="fixture-atom") == 2
        )
        assert (
            value(registry, "finsentry_crawler_fetches_total", source="fixture-rss", status="ok")
            == 5
        )
        assert (
            value(
                registry, "finsentry_crawler_fetches_total", source="fixture-rss", status="failed"
            )
            == 2
        )
        assert (
            value(
                registry, "finsentry_crawler_last_success_timestamp_seconds", source="fixture-rss"
            )
            > 0
        )
        assert (
            value(
                registry, "finsentry_crawler_last_success_timestamp_seconds", source="fixture-slow"
            )
            == 0
        )
        status = {r.source: r.status for r in results}
        assert status["fixture-broken"] == "malformed_feed" and status["fixture-slow"] == "timeout"
        assert status["fixture-blocked"] == "refused_robots"

        # --- second poll in the same process: 304 and nothing new ----------------------------
        again_status = {r.source: r for r in again}
        assert again_status["fixture-rss"].status == "not_modified"
        assert sum(len(r.emitted) for r in again) == 0
        assert (
            value(
                registry_again,
                "finsentry_crawler_fetches_total",
                source="fixture-rss",
                status="not_modified",
            )
            == 1
        )
        assert value(registry_again, "finsentry_crawler_duplicates_total", kind="seen") == 5
        assert value(registry_again, "finsentry_crawler_duplicates_total", kind="near") == 0

        # --- restart: a new process with the same state emits nothing new --------------------
        (registry2, _), after_restart, _ = asyncio.run(
            crawl_twice(settings, sources, kafka_settings)
        )
        assert sum(len(r.emitted) for r in after_restart) == 0
        assert {r.source: r.status for r in after_restart}["fixture-rss"] == "not_modified"
        assert value(registry2, "finsentry_crawler_duplicates_total", kind="seen") == 5
        assert (
            value(registry2, "finsentry_ingest_articles_emitted_total", source="fixture-atom") == 0
        )
        assert len(raw_reader(kafka_settings, expected=12)) == 12
