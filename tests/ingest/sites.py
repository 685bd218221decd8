"""Fixture web sites for the crawler tests: feeds and pages with every kind of trouble."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from pipeline.ingest.testing import Response

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = NOW - timedelta(minutes=30)

WIRE_STORY = (
    "Crude oil futures slumped more than six percent on Tuesday after producers signalled "
    "that output cuts agreed earlier this year would be unwound faster than expected, "
    "sending energy shares sharply lower across European and American markets. Traders "
    "said the surprise decision raised fears of a supply glut just as demand from China "
    "showed fresh signs of weakness, and analysts cut their price forecasts for the rest "
    "of the year. Shares of Exxon Mobil and Chevron fell in early trading while refiners "
    "were mixed."
)


def rfc822(when: datetime) -> str:
    if when.utcoffset():
        return format_datetime(when)  # e.g. "Mon, 05 Jan 2026 16:00:00 +0200"
    return format_datetime(when, usegmt=True)


def rss(items: list[dict]) -> bytes:
    parts = []
    for item in items:
        parts.append("<item>")
        for key in ("title", "link", "guid", "description"):
            if key in item:
                parts.append(f"<{key}><![CDATA[{item[key]}]]></{key}>")
        if "published" in item:
            parts.append(f"<pubDate>{rfc822(item['published'])}</pubDate>")
        parts.append("</item>")
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Fixture Markets</title><link>http://example.invalid/</link>"
        f"<description>fixture</description>{''.join(parts)}</channel></rss>"
    ).encode()


def atom(entries: list[dict]) -> bytes:
    parts = [
        f'<entry><title>{e["title"]}</title><link href="{e["link"]}"/><id>{e["link"]}</id>'
        f"<updated>{e['published'].strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
        f"<summary>{e['summary']}</summary></entry>"
        for e in entries
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Fixture "
        f"Atom</title><id>urn:fixture</id><updated>{NOW.strftime('%Y-%m-%dT%H:%M:%SZ')}</updated>"
        f"{''.join(parts)}</feed>"
    ).encode()


def page(title: str, paragraphs: list[str], charset: str = "utf-8") -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<html><head><title>{title}</title></head><body><nav>Home | Markets | About</nav>"
        f"<article><h1>{title}</h1>{body}</article><footer>Copyright fixture</footer></body></html>"
    ).encode(charset)


def html(body: bytes, charset: str = "utf-8") -> Response:
    return Response(200, body, {"Content-Type": f"text/html; charset={charset}"})


def etag_feed(body: bytes, etag: str):
    def handler(request):
        if request.headers.get("if-none-match") == etag:
            return Response(304, b"", {"ETag": etag})
        return Response(200, body, {"Content-Type": "application/rss+xml", "ETag": etag})

    return handler


def endless(chunk_bytes: int = 64 * 1024, total_bytes: int = 50 * 1024 * 1024):
    chunk = b"<p>" + b"x" * (chunk_bytes - 7) + b"</p>\n"
    for _ in range(total_bytes // len(chunk)):
        yield chunk


def build_routes(base: str) -> dict:
    """Routes of the fixture site; ``base`` is ``http://127.0.0.1:PORT``."""
    oil_text = [
        "Oil prices tumbled on Monday as OPEC members signalled higher supply, weighing on "
        "energy stocks including Exxon Mobil, while $XOM traders braced for more volatility.",
        "Analysts said the move could keep pressure on crude for weeks.",
    ]
    main_items = [
        {
            "title": "Oil tumbles as OPEC signals more supply",
            "link": f"{base}/articles/oil.html?utm_source=rss&utm_medium=feed",
            "description": "Oil prices fell.",
            "published": RECENT.astimezone(timezone(timedelta(hours=2))),
        },
        {
            "title": "Internal dashboard",
            "link": "http://10.0.0.1/admin",
            "description": "should never be fetched",
            "published": RECENT,
        },
        {
            "title": "Blocked story about Tesla",
            "link": f"{base}/blocked/story.html",
            "description": "Tesla Inc shares slid after a recall; summary only because "
            "robots.txt disallows the page.",
            "published": RECENT,
        },
        {
            "title": "Loop story",
            "link": f"{base}/loop/a",
            "description": "A page that redirects forever; the summary is used.",
            "published": RECENT,
        },
        {
            "title": "Huge story",
            "link": f"{base}/huge.html",
            "description": "A page of fifty megabytes; the summary is used.",
            "published": RECENT,
        },
        {
            "title": "Caf\u00e9 chain results",
            "link": f"{base}/latin1.html",
            "description": "Latin-1 page.",
            "published": RECENT,
        },
        {
            "title": "Undated story on Microsoft",
            "link": f"{base}/articles/undated.html",
            "description": "Microsoft announced a new data centre in Ireland today.",
        },
        {
            "title": "Story from the future",
            "link": f"{base}/articles/future.html",
            "description": "Dated next year by a broken CMS.",
            "published": NOW + timedelta(days=365),
        },
    ]
    three_sites = {
        name: rss(
            [
                {
                    "title": title,
                    "link": f"{base}/{name}/story.html",
                    "description": "Oil slumps.",
                    "published": RECENT,
                }
            ]
        )
        for name, title in (
            ("site-a", "Oil slumps as producers unwind cuts"),
            ("site-b", "Crude futures fall 6% on supply fears"),
            ("site-c", "Energy shares drop as oil slides"),
        )
    }
    routes = {
        "/robots.txt": lambda r: Response(
            200, b"User-agent: *\nDisallow: /blocked/\n", {"Content-Type": "text/plain"}
        ),
        "/rss.xml": etag_feed(rss(main_items), '"v1"'),
        "/atom.xml": lambda r: Response(
            200,
            atom(
                [
                    {
                        "title": "Apple beats estimates",
                        "link": f"{base}/atom/apple.html",
                        "published": RECENT,
                        "summary": "$AAPL rose after Apple reported record services revenue "
                        "and raised its dividend.",
                    },
                    {
                        "title": "Microsoft and JPMorgan sign cloud deal",
                        "link": f"{base}/atom/msft.html",
                        "published": RECENT,
                        "summary": "Microsoft will host JPMorgan workloads in a multi-year "
                        "agreement.",
                    },
                ]
            ),
            {"Content-Type": "application/atom+xml"},
        ),
        "/broken.xml": lambda r: Response(
            200,
            b"this is <<< not a feed at all & never was",
            {"Content-Type": "application/rss+xml"},
        ),
        "/blocked/feed.xml": lambda r: Response(
            200, rss([]), {"Content-Type": "application/rss+xml"}
        ),
        "/slow.xml": lambda r: Response(200, rss([]), delay_seconds=3.0),
        "/articles/oil.html": lambda r: html(
            page("Oil tumbles as OPEC signals more supply", oil_text)
        ),
        "/articles/undated.html": lambda r: html(
            page(
                "Undated story",
                [
                    "Microsoft announced a new data centre in Ireland today, adding capacity "
                    "for its cloud customers across Europe."
                ],
            )
        ),
        "/articles/future.html": lambda r: html(
            page(
                "Future",
                [
                    "A story whose feed date lies a year ahead because of a broken content "
                    "management system."
                ],
            )
        ),
        "/blocked/story.html": lambda r: html(page("Blocked", ["must not be fetched"])),
        "/loop/a": lambda r: Response(302, b"", {"Location": "/loop/b"}),
        "/loop/b": lambda r: Response(302, b"", {"Location": "/loop/a"}),
        "/huge.html": lambda r: Response(200, endless(), {"Content-Type": "text/html"}),
        "/latin1.html": lambda r: html(
            page(
                "Caf\u00e9 chain results",
                [
                    "The caf\u00e9 chain reported results in line with expectations and kept "
                    "its outlook for the year unchanged."
                ],
                charset="latin-1",
            ),
            charset="utf-8",
        ),
        "/bomb.html": lambda r: Response(
            200,
            gzip.compress(b"\0" * (20 * 1024 * 1024)),
            {"Content-Type": "text/html", "Content-Encoding": "gzip"},
        ),
    }
    for name, feed in three_sites.items():
        routes[f"/{name}/feed.xml"] = (
            lambda body: lambda r: Response(200, body, {"Content-Type": "application/rss+xml"})
        )(feed)
        banner = {
            "site-a": "Reporting by the wire desk.",
            "site-b": "From our partners at the wire.",
            "site-c": "This story was syndicated.",
        }[name]
        routes[f"/{name}/story.html"] = (lambda b: lambda r: html(page("story", [WIRE_STORY, b])))(
            banner
        )
    return routes


FEEDS_YAML = """\
defaults:
  poll_interval_seconds: 60
  fetch_article: true
sources:
  - {{name: fixture-rss, url: "{base}/rss.xml"}}
  - {{name: fixture-atom, url: "{base}/atom.xml", fetch_article: false}}
  - {{name: fixture-broken, url: "{base}/broken.xml"}}
  - {{name: fixture-blocked, url: "{base}/blocked/feed.xml"}}
  - {{name: fixture-slow, url: "{base}/slow.xml"}}
  - {{name: site-a, url: "{base}/site-a/feed.xml"}}
  - {{name: site-b, url: "{base}/site-b/feed.xml"}}
  - {{name: site-c, url: "{base}/site-c/feed.xml"}}
  - {{name: fixture-disabled, url: "{base}/none.xml", enabled: false}}
"""
