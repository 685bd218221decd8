"""robots.txt (RFC 9309): fetched once per origin, cached, obeyed.

A 2xx file is parsed; 4xx means no rules (allow all); 5xx or an unreachable
server means "disallow all" until the next try (5 minutes). ``Crawl-delay``
raises the per-host gap between requests (capped at 60 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

from pipeline.settings import CrawlerSettings

log = logging.getLogger(__name__)

_RETRY_UNREACHABLE_SECONDS = 300.0
_MAX_CRAWL_DELAY_SECONDS = 60.0


class RobotsPolicy:
    def __init__(self, fetcher, settings: CrawlerSettings) -> None:
        self._fetcher = fetcher
        self._settings = settings
        self._agent = settings.user_agent.split("/")[0].strip()
        self._rules: dict[str, tuple[RobotFileParser | bool, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self._locks.setdefault(origin, asyncio.Lock())
        async with lock:
            rules, expires = self._rules.get(origin, (True, 0.0))
            if origin not in self._rules or time.monotonic() >= expires:
                rules, ttl = await self._load(origin)
                self._rules[origin] = (rules, time.monotonic() + ttl)
        if isinstance(rules, bool):
            return rules
        return rules.can_fetch(self._agent, url)

    async def _load(self, origin: str) -> tuple[RobotFileParser | bool, float]:
        from pipeline.ingest.fetch import FetchError, host_key

        ttl = self._settings.robots_cache_seconds
        try:
            result = await self._fetcher.fetch(
                f"{origin}/robots.txt",
                max_bytes=self._settings.max_robots_bytes,
                check_robots=False,
                accept="text/plain",
            )
        except FetchError as exc:
            if exc.reason == "too_large":
                log.warning("robots.txt of %s is too large; treating as allow-all", origin)
                return True, ttl
            log.warning(
                "robots.txt of %s unreachable (%s); disallowing for now", origin, exc.reason
            )
            return False, _RETRY_UNREACHABLE_SECONDS
        if 400 <= result.status < 500:
            return True, ttl
        if result.status >= 500 or result.status < 200 or result.status >= 300:
            log.warning("robots.txt of %s answered %d; disallowing for now", origin, result.status)
            return False, _RETRY_UNREACHABLE_SECONDS
        parser = RobotFileParser()
        parser.parse(result.content.decode("utf-8", "replace").splitlines())
        delay = parser.crawl_delay(self._agent)
        if delay:
            self._fetcher.limiter.set_interval(
                host_key(origin + "/"), min(float(delay), _MAX_CRAWL_DELAY_SECONDS)
            )
        return parser, ttl
