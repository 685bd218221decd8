"""The fetcher's limits and the address guard, against a local server (no Kafka)."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from pipeline.ingest.extract import FeedError, decode_page, detect_language, parse_feed
from pipeline.ingest.fetch import FetchError, FetchRefused, HostLimiter, PoliteFetcher
from pipeline.ingest.netsafety import AddressGuard, RefusedAddress
from pipeline.ingest.testing import FixtureServer, Response
from pipeline.settings import CrawlerSettings

SETTINGS = CrawlerSettings(
    allow_loopback=True,
    per_host_interval_seconds=0.0,
    retries=2,
    backoff_base_seconds=0.01,
    read_timeout_seconds=1.0,
    state_url="sqlite://",
)


def fetch(server_routes, path, settings=SETTINGS, **kwargs):
    async def go():
        async with PoliteFetcher(settings) as fetcher:
            return await fetcher.fetch(
                server.url(path), max_bytes=kwargs.pop("max_bytes", 64 * 1024), **kwargs
            )

    with FixtureServer(server_routes) as server:
        try:
            return asyncio.run(go()), server
        except FetchError as exc:
            exc.server = server
            raise


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("10.0.0.1", "private"),
        ("192.168.1.5", "private"),
        ("172.16.0.1", "private"),
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "metadata"),
        ("fe80::1", "link_local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "reserved"),
        ("224.0.0.1", "multicast"),
    ],
)
def test_guard_refuses_internal_addresses(host, why):
    with pytest.raises(RefusedAddress) as info:
        asyncio.run(AddressGuard().resolve(host, 80))
    assert info.value.why == why


def test_guard_checks_every_resolved_address_and_allows_what_is_configured():
    async def resolver(host, port):
        return {
            "mixed.example": ["93.184.216.34", "10.1.2.3"],
            "intranet.example": ["10.9.9.9"],
            "public.example": ["93.184.216.34"],
        }[host]

    guard = AddressGuard(resolver=resolver)
    assert asyncio.run(guard.resolve("public.example", 443)) == ["93.184.216.34"]
    with pytest.raises(RefusedAddress, match="10.1.2.3"):
        asyncio.run(guard.resolve("mixed.example", 443))
    assert asyncio.run(
        AddressGuard(allow_private=True, resolver=resolver).resolve("intranet.example", 80)
    )
    with pytest.raises(RefusedAddress, match="metadata"):
        asyncio.run(AddressGuard(allow_private=True).resolve("169.254.169.254", 80))
    assert asyncio.run(AddressGuard(allow_loopback=True).resolve("127.0.0.1", 80)) == ["127.0.0.1"]


def test_loopback_refused_by_default_before_connecting():
    with pytest.raises(FetchRefused) as info:
        fetch(
            {"/x": lambda r: Response(200, b"x")},
            "/x",
            settings=SETTINGS.model_copy(update={"allow_loopback": False}),
        )
    assert info.value.reason == "private_address" and info.value.server.requests == []


def test_gzip_bomb_is_cut_at_the_decoded_cap():
    bomb = gzip.compress(b"\0" * (20 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    with pytest.raises(FetchError) as info:
        fetch({"/bomb": lambda r: Response(200, bomb, {"Content-Encoding": "gzip"})}, "/bomb")
    assert info.value.reason == "too_large"


def test_declared_length_over_the_cap_is_refused_without_reading():
    with pytest.raises(FetchError, match="Content-Length") as info:
        fetch({"/big": lambda r: Response(200, b"x" * 200_000)}, "/big")
    assert info.value.reason == "too_large"


def test_gzip_within_cap_is_decoded():
    body = b"<rss>" + b"a" * 10_000 + b"</rss>"
    result, _ = fetch(
        {"/ok": lambda r: Response(200, gzip.compress(body), {"Content-Encoding": "gzip"})}, "/ok"
    )
    assert result.content == body


def test_retries_with_backoff_then_succeeds():
    calls = []

    def flaky(request):
        calls.append(request)
        return (
            Response(503, b"busy", {"Retry-After": "0"})
            if len(calls) < 3
            else Response(200, b"fine")
        )

    result, _ = fetch({"/flaky": flaky}, "/flaky")
    assert result.status == 200 and len(calls) == 3


def test_redirects_are_followed_and_limited():
    def hop(i):
        return lambda r: Response(302, b"", {"Location": f"/r{i + 1}"})

    routes = {f"/r{i}": hop(i) for i in range(10)}
    routes["/r3"] = lambda r: Response(200, b"landed")
    result, _ = fetch(routes, "/r0")
    assert result.content == b"landed" and len(result.redirects) == 3 and result.url.endswith("/r3")
    routes["/r3"] = lambda r: Response(302, b"", {"Location": "/r4"})
    with pytest.raises(FetchError) as info:
        fetch(routes, "/r0", settings=SETTINGS.model_copy(update={"max_redirects": 4}))
    assert info.value.reason == "too_many_redirects"


def test_redirect_to_a_private_address_is_refused():
    with pytest.raises(FetchRefused) as info:
        fetch(
            {
                "/go": lambda r: Response(
                    301, b"", {"Location": "http://169.254.169.254/latest/meta-data"}
                )
            },
            "/go",
        )
    assert info.value.reason == "private_address"


def test_robots_crawl_delay_and_user_agent():
    routes = {
        "/robots.txt": lambda r: Response(
            200, b"User-agent: finsentry-crawler\nCrawl-delay: 7\nDisallow: /no\n"
        ),
        "/yes": lambda r: Response(200, b"ok"),
    }

    async def go(server):
        async with PoliteFetcher(SETTINGS) as fetcher:
            await fetcher.fetch(server.url("/yes"), max_bytes=1024)
            with pytest.raises(FetchRefused):
                await fetcher.fetch(server.url("/no"), max_bytes=1024)
            return fetcher.limiter._state(f"127.0.0.1:{server.port}").interval_seconds

    with FixtureServer(routes) as server:
        assert asyncio.run(go(server)) == 7.0
    assert server.paths() == ["/robots.txt", "/yes"]
    assert server.requests[1].headers["user-agent"].startswith("finsentry-crawler/")


def test_robots_server_error_means_disallow_and_404_means_allow():
    routes = {"/robots.txt": lambda r: Response(500, b""), "/x": lambda r: Response(200, b"x")}
    with pytest.raises(FetchRefused, match="robots"):
        fetch(routes, "/x")
    result, _ = fetch({"/x": lambda r: Response(200, b"x")}, "/x")
    assert result.content == b"x"


def test_host_limiter_spaces_requests():
    async def go():
        limiter, loop, starts = (
            HostLimiter(concurrency=1, interval_seconds=0.05),
            asyncio.get_running_loop(),
            [],
        )

        async def one():
            async with limiter.slot("h:80"):
                starts.append(loop.time())

        await asyncio.gather(*(one() for _ in range(4)))
        return starts

    starts = asyncio.run(go())
    assert all(b - a >= 0.049 for a, b in zip(starts, starts[1:], strict=False))


def test_feed_and_page_decoding():
    with pytest.raises(FeedError):
        parse_feed(b"<html><body>not a feed</body></html>")
    feed = parse_feed(
        b"<rss version='2.0'><channel><item><title>T &amp; C</title>"
        b"<description>&lt;p&gt;Hello "
        b"&lt;b&gt;world&lt;/b&gt;&lt;/p&gt;</description></item></channel></rss>"
    )
    assert (feed.items[0].title, feed.items[0].summary, feed.items[0].published_at) == (
        "T & C",
        "Hello world",
        None,
    )
    assert decode_page("Caf\u00e9".encode("cp1252"), "utf-8") == ("Caf\u00e9", True)
    assert decode_page("<meta charset='iso-8859-1'>Caf\u00e9".encode("latin-1"), None)[1] is False
    assert decode_page("Caf\u00e9".encode(), None) == ("Caf\u00e9", False)
    assert (
        detect_language("Les actions de la banque ont chuté après la publication des résultats")
        == "fr"
    )
    assert detect_language("short") == "und"
