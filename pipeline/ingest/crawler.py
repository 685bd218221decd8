"""The feed crawler: poll sources, build ``news.raw`` articles, emit each story once.

One poll of a source: conditional GET of the feed (ETag / Last-Modified), parse,
drop items already emitted (ids in :class:`~.state.CrawlerState`), fetch
article pages politely where the source asks for it (falling back to the
feed's summary), normalise the published time, detect language and tickers,
mark near-duplicates of earlier stories, send to the sink, and record the ids
Kafka acknowledged. Every failure is logged and counted by reason; none stops
the crawler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.ingest.canonical import InvalidUrl, canonical_url
from pipeline.ingest.extract import (
    FeedError,
    FeedItem,
    decode_page,
    detect_language,
    extract_article,
    parse_feed,
    parse_sitemap,
)
from pipeline.ingest.fetch import FetchError, FetchRefused, PoliteFetcher
from pipeline.ingest.neardup import NearDuplicateIndex
from pipeline.ingest.sink import ArticleSink
from pipeline.ingest.sources import Source
from pipeline.ingest.state import CrawlerState, EmittedRecord
from pipeline.ingest.tickers import TickerTagger
from pipeline.messages import MAX_BODY_CHARS, MAX_TITLE_CHARS, RawArticle, article_id, utc_now
from pipeline.metrics.definitions import CrawlerMetrics
from pipeline.settings import CrawlerSettings

log = logging.getLogger(__name__)

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass
class PollResult:
    """What one poll of one source did (also logged)."""

    source: str
    status: str = "ok"
    items: int = 0
    emitted: list[str] = field(default_factory=list)
    near_duplicates: int = 0
    already_seen: int = 0


def _status_label(status: int) -> str:
    if status == 304:
        return "not_modified"
    if 200 <= status < 300:
        return "ok"
    if 400 <= status < 500:
        return "client_error"
    if status >= 500:
        return "server_error"
    return "failed"


class Crawler:
    """Polls ``sources`` into ``sink``; ``async with Crawler(...) as crawler``."""

    def __init__(
        self,
        settings: CrawlerSettings,
        sources: list[Source],
        sink: ArticleSink,
        metrics: CrawlerMetrics,
        *,
        tagger: TickerTagger | None = None,
        fetcher: PoliteFetcher | None = None,
    ) -> None:
        self.settings = settings
        self.sources = sources
        self.sink = sink
        self.metrics = metrics
        self.tagger = tagger or TickerTagger()
        self.state = CrawlerState(settings.state_url)
        self.fetcher = fetcher or PoliteFetcher(settings)
        self.near = NearDuplicateIndex(
            settings.near_duplicate_threshold,
            settings.minhash_permutations,
            settings.near_duplicate_horizon_seconds,
        )
        for key, data, emitted_at in self.state.signatures_since(
            time.time() - settings.near_duplicate_horizon_seconds
        ):
            signature = self.near.from_bytes(data)
            if signature is not None:
                self.near.add(key, signature, emitted_at)
        self._emit_lock = asyncio.Lock()

    async def __aenter__(self) -> Crawler:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.fetcher.client.aclose()
        self.state.close()

    async def run_once(self) -> list[PollResult]:
        """Poll every source once, concurrently; returns one result per source."""
        self.fetcher.guard.forget()
        self.near.expire()
        return list(await asyncio.gather(*(self.poll(source) for source in self.sources)))

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll each source on its own interval until ``stop`` is set."""

        async def loop(source: Source) -> None:
            while not stop.is_set():
                started = time.monotonic()
                await self.poll(source)
                remaining = source.poll_interval_seconds - (time.monotonic() - started)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=max(remaining, 0.0))
                except TimeoutError:
                    pass

        async def housekeeping() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), timeout=60.0)
                except TimeoutError:
                    self.fetcher.guard.forget()
                    self.near.expire()

        await asyncio.gather(housekeeping(), *(loop(source) for source in self.sources))

    async def poll(self, source: Source) -> PollResult:
        """Poll one source; never raises (failures are counted and logged)."""
        result = PollResult(source.name)
        try:
            await self._poll(source, result)
        except Exception:  # a bug must not stop the other sources
            log.exception("crawler: unexpected failure polling %s", source.name)
            self.metrics.errors.labels(reason="internal").inc()
            result.status = "internal"
        log.info(
            "polled %s: %s, %d items, %d emitted (%d near-duplicates), %d already seen",
            source.name,
            result.status,
            result.items,
            len(result.emitted),
            result.near_duplicates,
            result.already_seen,
        )
        return result

    async def _poll(self, source: Source, result: PollResult) -> None:
        etag, last_modified = self.state.validators(source.url)
        fetched = await self._fetch(source, source.url, "feed", etag, last_modified)
        if isinstance(fetched, str):
            result.status = fetched
            return
        if fetched.not_modified:
            result.status = "not_modified"
            self.metrics.last_success.labels(source=source.name).set(time.time())
            return
        if fetched.status != 200:
            result.status = f"http_{fetched.status}"
            self.metrics.errors.labels(reason=_status_label(fetched.status)).inc()
            return
        try:
            if source.kind == "sitemap":
                feed = parse_sitemap(fetched.content)
            else:
                feed = parse_feed(fetched.content, fetched.headers.get("content-type"))
        except FeedError as exc:
            log.warning("source %s: %s", source.name, exc)
            self.metrics.errors.labels(reason=exc.reason).inc()
            result.status = exc.reason
            return
        if feed.malformed:
            log.warning(
                "source %s: malformed feed, %d items recovered: %s",
                source.name,
                len(feed.items),
                feed.malformed,
            )
            self.metrics.errors.labels(reason="malformed_feed").inc()
        self.metrics.last_success.labels(source=source.name).set(time.time())
        result.items = len(feed.items)

        candidates = self._new_items(source, feed.items, result)
        built = await asyncio.gather(
            *(self._build(source, item, url, key) for item, url, key in candidates)
        )
        failed = await self._emit(source, [a for a in built if a is not None], result)
        # Remember the ETag only once every item is safely on Kafka: otherwise the next
        # poll would get a 304 and never retry the items Kafka did not acknowledge.
        if not failed:
            self.state.save_validators(source.url, fetched.etag, fetched.last_modified)
        else:
            result.status = "emit_failed"

    async def _fetch(self, source, url, kind, etag=None, last_modified=None):
        """A FetchResult, or the status slug of a failure (already counted)."""
        started = time.monotonic()
        max_bytes = self.settings.max_feed_bytes if kind == "feed" else self.settings.max_page_bytes
        accept = FEED_ACCEPT if kind == "feed" else PAGE_ACCEPT
        try:
            fetched = await self.fetcher.fetch(
                url, max_bytes=max_bytes, etag=etag, last_modified=last_modified, accept=accept
            )
        except FetchRefused as exc:
            log.warning("source %s: refused %s: %s", source.name, url, exc.reason)
            self.metrics.refused.labels(reason=exc.reason).inc()
            return f"refused_{exc.reason}"
        except FetchError as exc:
            log.warning("source %s: %s", source.name, exc)
            self.metrics.fetches.labels(source=source.name, status="failed").inc()
            self.metrics.errors.labels(reason=exc.reason).inc()
            return exc.reason
        finally:
            self.metrics.fetch_duration.labels(kind=kind).observe(time.monotonic() - started)
        self.metrics.fetches.labels(source=source.name, status=_status_label(fetched.status)).inc()
        return fetched

    def _new_items(self, source: Source, items: list[FeedItem], result: PollResult):
        keyed, keys = [], set()
        for item in items:
            url = ""
            try:
                if item.link:
                    url = canonical_url(item.link)
                key = article_id(url) if url else article_id(source=source.name, guid=item.guid)
            except (InvalidUrl, ValueError):
                self.metrics.items_skipped.labels(reason="no_link").inc()
                continue
            if key not in keys:
                keys.add(key)
                keyed.append((item, url, key))
        seen = self.state.seen(keys)
        result.already_seen = len(seen)
        if seen:
            self.metrics.duplicates.labels(kind="seen").inc(len(seen))
        return [(item, url, key) for item, url, key in keyed if key not in seen]

    async def _build(self, source: Source, item: FeedItem, url: str, key: str) -> RawArticle | None:
        body, page_published = item.summary, None
        link = item.link.strip()
        if link:
            try:
                await self.fetcher.check_url(link)
            except FetchRefused as exc:
                log.warning("source %s: item %s refused: %s", source.name, link[:200], exc.reason)
                self.metrics.refused.labels(reason=exc.reason).inc()
                return None
        if source.fetch_article and link:
            fetched = await self._fetch(source, link, "page")
            if fetched == "refused_private_address":
                return None  # a redirect into the private network: drop the item
            if not isinstance(fetched, str) and fetched.status == 200:
                page, mislabelled = decode_page(fetched.content, fetched.charset)
                if mislabelled:
                    log.warning(
                        "source %s: %s is not in its declared charset", source.name, link[:200]
                    )
                    self.metrics.errors.labels(reason="bad_charset").inc()
                text, page_published = await asyncio.to_thread(extract_article, page, fetched.url)
                if text:
                    body = text
            elif not isinstance(fetched, str):
                self.metrics.errors.labels(reason=_status_label(fetched.status)).inc()
        title = item.title[:MAX_TITLE_CHARS]
        if len(body) > MAX_BODY_CHARS:
            log.warning(
                "source %s: body of %s cut to %d characters",
                source.name,
                link[:200],
                MAX_BODY_CHARS,
            )
            body = body[:MAX_BODY_CHARS]
        if not (title.strip() or body.strip()):
            self.metrics.items_skipped.labels(reason="empty_text").inc()
            return None
        fetched_at = utc_now()
        published = self._published(item.published_at or page_published, fetched_at)
        if published is None:
            return None
        return RawArticle(
            id=key,
            url=url,
            source=source.name,
            title=title,
            body=body,
            published_at=published,
            fetched_at=fetched_at,
            lang=detect_language(f"{title}\n{body}"),
            tickers=self.tagger.tickers(title, body),
        )

    def _published(self, published: datetime | None, fetched_at: datetime) -> datetime | None:
        settings = self.settings
        if published is None:
            if settings.missing_date == "skip":
                self.metrics.items_skipped.labels(reason="no_date").inc()
                return None
            self.metrics.dates_replaced.labels(reason="missing").inc()
            return fetched_at
        if published > fetched_at + timedelta(seconds=settings.future_tolerance_seconds):
            self.metrics.dates_replaced.labels(reason="future").inc()
            return fetched_at
        if settings.max_item_age_seconds and published < fetched_at - timedelta(
            seconds=settings.max_item_age_seconds
        ):
            self.metrics.items_skipped.labels(reason="stale").inc()
            return None
        return published

    async def _emit(self, source: Source, articles: list[RawArticle], result: PollResult) -> int:
        """Send, wait for acknowledgements, record what was delivered; returns the failures."""
        async with self._emit_lock:  # one source at a time: near-duplicate order is send order
            signatures = {}
            for index, article in enumerate(articles):
                signature = self.near.signature(article.text)
                signatures[article.id] = signature
                if signature is None:
                    continue
                original = self.near.find(signature)
                if original is not None:
                    articles[index] = article.model_copy(update={"duplicate_of": original})
                    self.metrics.duplicates.labels(kind="near").inc()
                    result.near_duplicates += 1
                else:
                    self.near.add(article.id, signature)
            for article in articles:
                self.sink.send(article)
            delivered = await asyncio.to_thread(self.sink.flush)
        records, failed = [], 0
        for article, error in delivered:
            if error is not None:
                failed += 1
                log.warning("article %s not acknowledged by Kafka: %s", article.id, error)
                self.metrics.emit_failures.labels(source=source.name).inc()
                self.near.remove(article.id)  # not emitted: nothing may point at it
                continue
            signature = signatures.get(article.id)
            records.append(
                EmittedRecord(
                    article.id,
                    source.name,
                    article.url,
                    article.duplicate_of,
                    self.near.to_bytes(signature)
                    if signature is not None and article.duplicate_of is None
                    else None,
                )
            )
            self.metrics.articles_emitted.labels(source=source.name).inc()
            result.emitted.append(article.id)
        self.state.mark_emitted(records)
        return failed
