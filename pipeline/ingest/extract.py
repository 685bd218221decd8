"""From fetched bytes to article fields: feed entries, page text, dates, language.

Feeds are parsed by feedparser (RSS 0.9x/1.0/2.0, Atom, lenient about broken
XML); article pages by trafilatura (main text without navigation and
boilerplate). Pages are decoded by the charset the server or the page
declares, falling back to UTF-8 and then windows-1252 (the HTML default), so a
mislabelled page is readable and counted instead of lost.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import feedparser

log = logging.getLogger(__name__)

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_META_PUBLISHED = re.compile(
    r"""<meta[^>]+(?:property|name|itemprop)\s*=\s*["'](?:article:published_time|datePublished|"""
    r"""og:published_time|pubdate)["'][^>]*content\s*=\s*["']([^"']+)["']""",
    re.I,
)
#: feedparser "bozo" exceptions that do not mean the feed is broken.
_BENIGN_BOZO = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)

#: Shortest text worth guessing a language for (characters).
MIN_LANGUAGE_CHARS = 20


class FeedError(ValueError):
    """A feed body that yields no entries; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"feed: {reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class FeedItem:
    link: str
    guid: str
    title: str
    summary: str
    published_at: datetime | None


@dataclass(frozen=True)
class ParsedFeed:
    items: list[FeedItem]
    malformed: str | None  #: the parser's complaint when the XML was broken but recoverable


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment (feed summaries): tags dropped, entities decoded."""
    text = html.unescape(_TAG.sub(" ", fragment or ""))
    lines = (_SPACE.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def _struct_to_utc(value) -> datetime | None:
    if not value:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def parse_feed(content: bytes, content_type: str | None = None) -> ParsedFeed:
    """Entries of an RSS/Atom body; raises FeedError when nothing usable is in it."""
    headers = {"content-type": content_type} if content_type else {}
    parsed = feedparser.parse(content, response_headers=headers, sanitize_html=True)
    problem = None
    if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), _BENIGN_BOZO):
        problem = str(parsed.get("bozo_exception") or "malformed")[:300]
    items = []
    for entry in parsed.entries:
        content_html = ""
        if entry.get("content"):
            content_html = max((c.get("value", "") for c in entry["content"]), key=len)
        summary = html_to_text(content_html or entry.get("summary", ""))
        items.append(
            FeedItem(
                link=(entry.get("link") or "").strip(),
                guid=(entry.get("id") or "").strip(),
                title=html_to_text(entry.get("title", "")).replace("\n", " "),
                summary=summary,
                published_at=_struct_to_utc(entry.get("published_parsed"))
                or _struct_to_utc(entry.get("updated_parsed")),
            )
        )
    if not items and problem:
        raise FeedError("malformed_feed", problem)
    if not items and not parsed.get("version"):
        raise FeedError("malformed_feed", "not an RSS or Atom document")
    return ParsedFeed(items, problem)


_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
_NEWS_NS = "{http://www.google.com/schemas/sitemap-news/0.9}"


def parse_sitemap(content: bytes) -> ParsedFeed:
    """Entries of an XML sitemap (with Google News extensions when present).

    ``<url><loc>`` is the link; the title comes from ``news:title`` and the
    time from ``news:publication_date`` or ``lastmod``. Sitemap *index* files
    are not followed: list the child sitemaps as sources instead.
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(content)  # expat refuses entity-expansion bombs
    except ET.ParseError as exc:
        raise FeedError("malformed_feed", f"sitemap: {exc}") from exc
    if root.tag == f"{_SITEMAP_NS}sitemapindex":
        raise FeedError("malformed_feed", "a sitemap index: list its child sitemaps as sources")
    if root.tag != f"{_SITEMAP_NS}urlset":
        raise FeedError("malformed_feed", f"not a sitemap (root element {root.tag!r})")
    items = []
    for url in root.iter(f"{_SITEMAP_NS}url"):
        loc = (url.findtext(f"{_SITEMAP_NS}loc") or "").strip()
        if not loc:
            continue
        news = url.find(f"{_NEWS_NS}news")
        title = (news.findtext(f"{_NEWS_NS}title") if news is not None else None) or ""
        when = (news.findtext(f"{_NEWS_NS}publication_date") if news is not None else None) or (
            url.findtext(f"{_SITEMAP_NS}lastmod") or ""
        )
        # a bare date (no time, no offset) is too coarse for event time: None
        published = parse_timestamp(when) if when.strip() else None
        items.append(FeedItem(loc, loc, html_to_text(title).replace("\n", " "), "", published))
    return ParsedFeed(items, None)


def decode_page(content: bytes, header_charset: str | None) -> tuple[str, bool]:
    """Text of an HTML page and whether its declared charset was wrong.

    Order: the HTTP charset, then a ``<meta charset>``, then UTF-8, then
    windows-1252. Invalid bytes never raise; the second value says that the
    declared (or assumed UTF-8) encoding did not fit.
    """
    declared = header_charset
    if not declared:
        match = _META_CHARSET.search(content[:4096])
        declared = match.group(1).decode("ascii", "ignore").lower() if match else None
    candidates = [c for c in (declared, "utf-8") if c]
    for index, encoding in enumerate(candidates):
        try:
            return content.decode(encoding), index > 0 and declared is not None
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return content.decode("cp1252"), True
    except UnicodeDecodeError:
        return content.decode("utf-8", "replace"), True


def extract_article(page_html: str, url: str) -> tuple[str, datetime | None]:
    """Main text of an article page (may be empty) and its published time if it declares one."""
    import trafilatura

    text = trafilatura.extract(
        page_html,
        url=url,
        include_comments=False,
        include_tables=False,
        favor_precision=True,
        deduplicate=True,
    )
    published = None
    match = _META_PUBLISHED.search(page_html[:200_000])
    if match:
        published = parse_timestamp(match.group(1))
    return (text or "").strip(), published


def parse_timestamp(value: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 time with an offset, in UTC; None if unparseable or naive."""
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def warm_up_language_model() -> None:
    """Load the language model now (about a second) rather than on the first article."""
    import py3langid

    py3langid.classify("warm up the language identification model")


def detect_language(text: str) -> str:
    """ISO 639-1 code of the text's language, ``und`` when too short to tell."""
    sample = text.strip()[:2000]
    if len(sample) < MIN_LANGUAGE_CHARS:
        return "und"
    import py3langid

    language, _score = py3langid.classify(sample)
    return language or "und"
