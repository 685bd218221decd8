"""Crawler behaviour in-process (list sink): delivery failures, the polling loop."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from pipeline.ingest.crawler import Crawler
from pipeline.ingest.sink import ListSink
from pipeline.ingest.sources import Source
from pipeline.ingest.testing import FixtureServer, Response
from pipeline.metrics.definitions import CrawlerMetrics
from pipeline.settings import CrawlerSettings
from tests.ingest.sites import RECENT, etag_feed, rss


class FlakySink(ListSink):
    """Kafka refuses the first flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self):
        self.flushes += 1
        if self.flushes == 1:
            pending, self._pending = self._pending, []
            return [(article, TimeoutError("broker away")) for article in pending]
        return super().flush()


def settings(tmp_path) -> CrawlerSettings:
    return CrawlerSettings(
        state_url=f"sqlite:///{tmp_path / 's.sqlite'}",
        allow_loopback=True,
        per_host_interval_seconds=0,
        register_target=False,
    )


def routes_with_feed():
    routes = {"/robots.txt": lambda r: Response(404, b"")}
    items = [
        {
            "title": f"Story {i} about markets",
            "link": f"/s{i}",
            "description": "Summary text.",
            "published": RECENT,
        }
        for i in range(3)
    ]
    return routes, items


def test_unacknowledged_items_are_retried_next_poll(tmp_path):
    routes, items = routes_with_feed()
    with FixtureServer(routes) as server:
        for item in items:
            item["link"] = server.url(item["link"])
        routes["/feed.xml"] = etag_feed(rss(items), '"e1"')
        source = Source(
            name="s", url=server.url("/feed.xml"), poll_interval_seconds=60, fetch_article=False
        )
        sink, registry = FlakySink(), CollectorRegistry()

        async def go():
            async with Crawler(settings(tmp_path), [source], sink, CrawlerMetrics(registry)) as c:
                return await c.run_once(), await c.run_once()

        first, second = asyncio.run(go())
    assert first[0].status == "emit_failed" and first[0].emitted == []
    # no ETag was stored, so the feed is fetched in full again and the items go out
    assert second[0].status == "ok" and len(second[0].emitted) == 3
    assert [r.headers.get("if-none-match") for r in server.requests if r.path == "/feed.xml"] == [
        None,
        None,
    ]
    assert registry.get_sample_value("finsentry_ingest_emit_failures_total", {"source": "s"}) == 3
    assert (
        registry.get_sample_value("finsentry_ingest_articles_emitted_total", {"source": "s"}) == 3
    )
    assert len(sink.articles) == 3


def test_run_forever_polls_on_the_interval_until_stopped(tmp_path):
    routes, items = routes_with_feed()
    with FixtureServer(routes) as server:
        routes["/feed.xml"] = lambda r: Response(
            200, rss([]), {"Content-Type": "application/rss+xml"}
        )
        source = Source(name="s", url=server.url("/feed.xml"), poll_interval_seconds=1.0)

        async def go():
            stop = asyncio.Event()
            async with Crawler(
                settings(tmp_path), [source], ListSink(), CrawlerMetrics(CollectorRegistry())
            ) as crawler:
                task = asyncio.create_task(crawler.run_forever(stop))
                await asyncio.sleep(1.5)
                stop.set()
                await asyncio.wait_for(task, timeout=5)

        asyncio.run(go())
    assert server.paths().count("/feed.xml") == 2


def test_near_duplicates_are_remembered_across_restarts(tmp_path):
    from tests.ingest.sites import WIRE_STORY

    routes = {"/robots.txt": lambda r: Response(404, b"")}
    with FixtureServer(routes) as server:
        for site in ("a", "b"):
            feed = rss(
                [
                    {
                        "title": f"Oil story on {site}",
                        "link": server.url(f"/{site}/story"),
                        "description": f"{WIRE_STORY} Published by site {site}.",
                        "published": RECENT,
                    }
                ]
            )
            routes[f"/{site}.xml"] = (lambda body: lambda r: Response(200, body))(feed)
        site_a = Source(
            name="a", url=server.url("/a.xml"), poll_interval_seconds=60, fetch_article=False
        )
        site_b = site_a.model_copy(update={"name": "b", "url": server.url("/b.xml")})

        async def crawl(sources):
            sink = ListSink()
            async with Crawler(
                settings(tmp_path), sources, sink, CrawlerMetrics(CollectorRegistry())
            ) as crawler:
                await crawler.run_once()
            return sink.articles

        [original] = asyncio.run(crawl([site_a]))
        [copy] = asyncio.run(crawl([site_b]))  # a new process, same state
    assert original.duplicate_of is None and copy.duplicate_of == original.id


SITEMAP = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url><loc>{base}/p/1</loc>
    <news:news><news:publication_date>{when}</news:publication_date>
      <news:title>Boeing shares slide after new delivery halt</news:title></news:news></url>
  <url><loc>{base}/p/2</loc><lastmod>2020-01-01</lastmod></url>
</urlset>"""


def test_sitemap_source(tmp_path):
    from tests.ingest.sites import html, page

    routes = {"/robots.txt": lambda r: Response(404, b"")}
    with FixtureServer(routes) as server:
        body = SITEMAP.replace(b"{base}", server.url("").encode()).replace(
            b"{when}", RECENT.isoformat().encode()
        )
        routes["/sitemap.xml"] = lambda r: Response(200, body, {"Content-Type": "application/xml"})
        routes["/p/1"] = lambda r: html(
            page(
                "Boeing",
                [
                    "Boeing shares slid on Monday after the planemaker halted deliveries "
                    "of its newest jet while regulators review a manufacturing problem "
                    "found at a supplier."
                ],
            )
        )
        routes["/p/2"] = lambda r: html(
            page(
                "Undated",
                [
                    "A page listed in the sitemap with only a date, which is too coarse "
                    "to use as event time so the fetch time stands in and the "
                    "replacement is counted."
                ],
            )
        )
        source = Source(
            name="map", url=server.url("/sitemap.xml"), poll_interval_seconds=60, kind="sitemap"
        )
        sink, registry = ListSink(), CollectorRegistry()

        async def go():
            async with Crawler(settings(tmp_path), [source], sink, CrawlerMetrics(registry)) as c:
                return await c.run_once()

        [result] = asyncio.run(go())
    assert result.status == "ok" and len(result.emitted) == 2
    first, second = sorted(sink.articles, key=lambda a: a.url)
    assert first.title == "Boeing shares slide after new delivery halt" and first.tickers == ["BA"]
    assert first.published_at == RECENT and "halted deliveries" in first.body
    assert second.published_at == second.fetched_at
    assert (
        registry.get_sample_value("finsentry_crawler_dates_replaced_total", {"reason": "missing"})
        == 1
    )


def _entity_bomb() -> bytes:
    """A billion-laughs document: 10**8 characters from 1 KB of entities."""
    names = "abcdefgh"
    entities = ['<!ENTITY a "aaaaaaaaaa">'] + [
        f'<!ENTITY {name} "{("&" + prev + ";") * 10}">'
        for prev, name in zip(names, names[1:], strict=False)
    ]
    return f"<!DOCTYPE x [{''.join(entities)}]><urlset>&h;</urlset>".encode()


ENTITY_BOMB = _entity_bomb()


def test_sitemap_parsing_errors():
    import pytest

    from pipeline.ingest.extract import FeedError, parse_sitemap

    for bad, message in (
        (b"<urlset><url>", "sitemap"),
        (b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>', "index"),
        (b"<rss/>", "not a sitemap"),
        (ENTITY_BOMB, "sitemap"),
    ):
        with pytest.raises(FeedError, match=message):
            parse_sitemap(bad)
