"""A polite, bounded HTTP fetcher for feeds and article pages.

One :class:`PoliteFetcher` per crawler process. Every request:

1. has an http(s) URL whose host resolves only to allowed addresses
   (:mod:`.netsafety`; checked before any connection, for every redirect hop);
2. is allowed by the host's robots.txt (:mod:`.robots`);
3. waits for a per-host slot (concurrency and a minimum gap between requests);
4. carries the finsentry user agent and, for feeds, ETag / Last-Modified;
5. is streamed and aborted once its *decoded* body passes the size cap, so a
   50 MB page or a gzip bomb costs at most the cap in memory;
6. is retried with exponential backoff and jitter on timeouts, connection
   errors, 429 and 502/503/504 (honouring Retry-After up to the backoff cap).

Redirects are followed by hand (each hop checked) up to ``max_redirects``; a
URL seen twice in one chain is a ``redirect_loop``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from pipeline.ingest.netsafety import AddressGuard, GuardedBackend, RefusedAddress
from pipeline.settings import CrawlerSettings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class FetchError(Exception):
    """A fetch that failed; ``reason`` is a stable slug used as a metric label."""

    def __init__(self, reason: str, url: str, detail: str = "") -> None:
        super().__init__(f"fetch {url[:300]}: {reason}{': ' + detail if detail else ''}")
        self.reason = reason
        self.url = url
        self.detail = detail


class FetchRefused(FetchError):
    """Not fetched by policy (robots, private_address, bad_scheme)."""


@dataclass(frozen=True)
class FetchResult:
    url: str  #: final URL after redirects
    status: int
    content: bytes
    headers: httpx.Headers
    redirects: tuple[str, ...] = ()

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def etag(self) -> str | None:
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        return self.headers.get("last-modified")

    @property
    def charset(self) -> str | None:
        content_type = self.headers.get("content-type", "")
        for part in content_type.split(";")[1:]:
            key, _, value = part.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("\"'").lower()
        return None


@dataclass
class _HostState:
    semaphore: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_at: float = 0.0
    interval_seconds: float = 0.0


class HostLimiter:
    """At most ``concurrency`` requests per host, at least ``interval`` seconds apart."""

    def __init__(self, concurrency: int, interval_seconds: float) -> None:
        self._concurrency = concurrency
        self._interval = interval_seconds
        self._hosts: dict[str, _HostState] = {}

    def _state(self, host: str) -> _HostState:
        if host not in self._hosts:
            self._hosts[host] = _HostState(
                asyncio.Semaphore(self._concurrency), interval_seconds=self._interval
            )
        return self._hosts[host]

    def set_interval(self, host: str, seconds: float) -> None:
        """Raise the gap for ``host`` (robots.txt Crawl-delay); never below the default."""
        self._state(host).interval_seconds = max(self._interval, seconds)

    @asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        state = self._state(host)
        async with state.semaphore:
            async with state.lock:
                loop = asyncio.get_running_loop()
                wait = state.next_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                state.next_at = loop.time() + state.interval_seconds
            yield


def host_key(url: str) -> str:
    parts = urlsplit(url)
    return (
        f"{(parts.hostname or '').lower()}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    )


class _Decoder:
    """gzip / deflate / identity decoding that never produces more than ``limit`` bytes."""

    def __init__(self, encoding: str, limit: int, url: str) -> None:
        encoding = encoding.strip().lower()
        self._url = url
        self._limit = limit
        self._size = 0
        if encoding in ("", "identity"):
            self._zlib = None
        elif encoding in ("gzip", "x-gzip"):
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._zlib = zlib.decompressobj()
        else:
            raise FetchError("bad_encoding", url, f"unsupported Content-Encoding {encoding!r}")

    def _count(self, chunk: bytes) -> bytes:
        self._size += len(chunk)
        if self._size > self._limit:
            raise FetchError("too_large", self._url, f"body passes {self._limit} bytes (decoded)")
        return chunk

    def feed(self, data: bytes) -> bytes:
        if self._zlib is None:
            return self._count(data)
        out = []
        while data:
            try:
                chunk = self._zlib.decompress(data, self._limit - self._size + 1)
            except zlib.error as exc:
                raise FetchError(
                    "bad_encoding", self._url, f"corrupt compressed body: {exc}"
                ) from exc
            out.append(self._count(chunk))
            data = self._zlib.unconsumed_tail
        return b"".join(out)


class PoliteFetcher:
    """Async fetcher; use as ``async with PoliteFetcher(settings) as fetcher``."""

    def __init__(
        self,
        settings: CrawlerSettings,
        *,
        guard: AddressGuard | None = None,
        robots=None,
    ) -> None:
        from pipeline.ingest.robots import RobotsPolicy

        self.settings = settings
        self.guard = guard or AddressGuard(
            allow_loopback=settings.allow_loopback, allow_private=settings.allow_private_networks
        )
        self.limiter = HostLimiter(
            settings.per_host_concurrency, settings.per_host_interval_seconds
        )
        self.robots = robots or RobotsPolicy(self, settings)
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
        # httpx has no public hook for the network backend; swap its pool for one that
        # connects only to the addresses the guard checked (no second DNS lookup).
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=transport._pool._ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(self.guard),
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_seconds,
                read=settings.read_timeout_seconds,
                write=settings.read_timeout_seconds,
                pool=settings.request_deadline_seconds,
            ),
        )

    async def __aenter__(self) -> PoliteFetcher:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.client.aclose()

    async def check_url(self, url: str) -> None:
        """Refuse (FetchRefused) a URL whose scheme or resolved address is not allowed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused("bad_scheme", url, "only absolute http(s) URLs are fetched")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            await self.guard.resolve(parts.hostname, port)
        except RefusedAddress as exc:
            raise FetchRefused("private_address", url, exc.why) from exc

    async def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        etag: str | None = None,
        last_modified: str | None = None,
        check_robots: bool = True,
        accept: str = "*/*",
    ) -> FetchResult:
        """GET ``url`` within every limit; raises FetchError / FetchRefused."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        chain: list[str] = []
        current = url
        while True:
            await self.check_url(current)
            if check_robots and not await self.robots.allowed(current):
                raise FetchRefused("robots", current, "disallowed by robots.txt")
            result = await self._get_with_retries(current, headers, max_bytes)
            location = result.headers.get("location")
            if result.status not in (301, 302, 303, 307, 308) or not location:
                return FetchResult(
                    result.url, result.status, result.content, result.headers, tuple(chain)
                )
            chain.append(current)
            current = urljoin(current, location.strip())
            if current in chain:
                raise FetchError("redirect_loop", url, " -> ".join([*chain, current])[:500])
            if len(chain) > self.settings.max_redirects:
                raise FetchError(
                    "too_many_redirects", url, f"more than {self.settings.max_redirects} hops"
                )

    async def _get_with_retries(self, url: str, headers: dict, max_bytes: int) -> FetchResult:
        attempts = self.settings.retries + 1
        for attempt in range(attempts):
            last_try = attempt == attempts - 1
            try:
                async with self.limiter.slot(host_key(url)):
                    result = await asyncio.wait_for(
                        self._get_once(url, headers, max_bytes),
                        self.settings.request_deadline_seconds,
                    )
            except (TimeoutError, httpx.TimeoutException) as exc:
                if last_try:
                    raise FetchError("timeout", url, type(exc).__name__) from exc
                delay = self._backoff(attempt)
            except RefusedAddress as exc:
                raise FetchRefused("private_address", url, exc.why) from exc
            except httpx.TransportError as exc:
                if last_try:
                    raise FetchError("connect_error", url, str(exc) or type(exc).__name__) from exc
                delay = self._backoff(attempt)
            else:
                if result.status not in RETRY_STATUSES or last_try:
                    return result
                delay = max(self._backoff(attempt), self._retry_after(result.headers))
            log.info("retrying %s in %.2fs (attempt %d of %d)", url, delay, attempt + 2, attempts)
            await asyncio.sleep(delay)
        raise FetchError(
            "timeout", url, "retries exhausted"
        )  # pragma: no cover - loop returns or raises

    async def _get_once(self, url: str, headers: dict, max_bytes: int) -> FetchResult:
        async with self.client.stream("GET", url, headers=headers) as response:
            declared = response.headers.get("content-length", "")
            encoding = response.headers.get("content-encoding", "")
            if declared.isdigit() and not encoding and int(declared) > max_bytes:
                raise FetchError("too_large", url, f"Content-Length {declared} > {max_bytes} bytes")
            decoder = _Decoder(encoding, max_bytes, url)
            body = bytearray()
            async for raw in response.aiter_raw():
                body += decoder.feed(raw)
            return FetchResult(
                str(response.url), response.status_code, bytes(body), response.headers
            )

    def _backoff(self, attempt: int) -> float:
        base = self.settings.backoff_base_seconds * (2**attempt)
        return min(self.settings.backoff_max_seconds, base * (0.5 + random.random() / 2))

    def _retry_after(self, headers: httpx.Headers) -> float:
        value = headers.get("retry-after", "").strip()
        if not value:
            return 0.0
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return 0.0
        return min(max(seconds, 0.0), self.settings.backoff_max_seconds)
