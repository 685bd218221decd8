"""Alert context: the articles behind a negative spike, and the words behind each verdict.

For a firing ``NegativeSentimentSpike`` (labels ``dimension`` = topic | ticker,
``key``, ``window`` like ``1m`` or ``15m``) the notifier asks the article store
for the most negative articles of that topic or ticker published in the alert's
window. The rule's ``window_end`` annotation gives the window's end in event
time, so the window is ``[window_end - window, window_end]`` whatever the wall
clock says (a replay runs ahead of it, a backfill behind). Without that
annotation it is guessed from the wall clock: from ``startsAt - window - grace``
to the alert's end (now while it fires); ``grace`` covers what lies between a
window and its alert: the Flink watermark delay, out-of-order arrivals and the
rule's ``for``.

Articles are de-duplicated by story: a syndicated copy (``duplicate_of``) or a
second article with the same normalised title counts once, as its most
negative copy. Each article carries the phrases that explain its sentiment,
read from the store when they explain the article's model version, otherwise
computed (word occlusion, :mod:`models.explain`) and stored for next time.

Everything here is best effort: a store or model problem is logged and the
notification goes out without articles rather than not at all.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.articles.store import ArticleStore, StoredArticle

log = logging.getLogger(__name__)

#: Alerts that get articles attached.
CONTEXT_ALERTS = frozenset({"NegativeSentimentSpike"})

_WINDOW = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_WINDOW_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SPACES = re.compile(r"\W+")


def window_seconds(label: str) -> float:
    """``15m`` -> 900.0 (the exporter's ``window`` label)."""
    match = _WINDOW.match(label.strip())
    if not match:
        raise ValueError(f"notify context: window label {label!r} is not like 1m, 15m, 1h")
    return int(match.group(1)) * _WINDOW_SECONDS[match.group(2)]


def _time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.year <= 1:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _epoch(value: str | None) -> datetime | None:
    try:
        seconds = float(value or "")
    except ValueError:
        return None
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None


def story_key(article: StoredArticle) -> str:
    return article.duplicate_of or article.id


def title_key(article: StoredArticle) -> str:
    return _SPACES.sub(" ", article.title.lower()).strip()


def dedupe_stories(articles: list[StoredArticle]) -> list[StoredArticle]:
    """First article of each story (same ``duplicate_of``/id, or same normalised title)."""
    seen_stories: set[str] = set()
    seen_titles: set[str] = set()
    kept = []
    for article in articles:
        story, title = story_key(article), title_key(article)
        if story in seen_stories or (title and title in seen_titles):
            continue
        seen_stories.update({story, article.id})
        if title:
            seen_titles.add(title)
        kept.append(article)
    return kept


@dataclass(frozen=True)
class ContextArticle:
    id: str
    title: str
    source: str
    url: str
    published_at: datetime
    sentiment_score: float
    topic: str
    tickers: tuple[str, ...]
    #: Phrases that pushed the negative verdict, strongest first (may be empty).
    phrases: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "published_at": self.published_at.isoformat().replace("+00:00", "Z"),
            "sentiment_score": round(self.sentiment_score, 4),
            "topic": self.topic,
            "tickers": list(self.tickers),
            "phrases": list(self.phrases),
        }


class AlertContext:
    """Looks up and explains the articles behind spike alerts."""

    def __init__(
        self,
        store: ArticleStore,
        *,
        limit: int = 5,
        grace_seconds: float = 120.0,
        explainer: Any | None = None,
        explain: bool = True,
    ) -> None:
        self.store = store
        self.limit = limit
        self.grace_seconds = grace_seconds
        self._explainer = explainer
        self._explain = explain
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings) -> AlertContext | None:
        """From ``NotifierSettings``; None when no article store is configured."""
        if settings.articles_database_url is None:
            return None
        store = ArticleStore(settings.articles_database_url.get_secret_value())
        return cls(
            store,
            limit=settings.context_articles,
            grace_seconds=settings.context_grace_seconds,
            explain=settings.context_explain,
        )

    def warm_up(self) -> None:
        """Load the explaining model in the background, so the first alert does not wait."""
        if self._explain and self._explainer is None:
            threading.Thread(target=self._get_explainer, name="explainer-load", daemon=True).start()

    def close(self) -> None:
        self.store.close()

    def articles_for(
        self, labels: dict[str, str], starts_at: str, ends_at: str = "", window_end: str = ""
    ) -> list[ContextArticle]:
        """The top negative stories of the alert's topic or ticker in its window.

        ``window_end`` (the alert's annotation: epoch seconds, event time) names the
        window exactly: its articles are those published in ``[end - window, end]``.
        Without it the window is guessed from the wall clock (``startsAt``), which
        only holds while event time follows the wall clock (not in a replay).
        """
        if labels.get("alertname") not in CONTEXT_ALERTS:
            return []
        dimension, key = labels.get("dimension"), labels.get("key")
        if dimension not in ("topic", "ticker") or not key:
            return []
        start = _time(starts_at)
        if start is None:
            return []
        try:
            window = window_seconds(labels.get("window", "1m"))
        except ValueError as exc:
            log.warning("%s", exc)
            return []
        end = _epoch(window_end)
        if end is not None:
            since, until = end - timedelta(seconds=window), end + timedelta(seconds=1)
        else:
            since = start - timedelta(seconds=window + self.grace_seconds)
            until = _time(ends_at) or datetime.now(UTC)
            until = max(until, start) + timedelta(seconds=1)
        rows = self.store.query(
            topic=key if dimension == "topic" else None,
            ticker=key if dimension == "ticker" else None,
            sentiment="negative",
            since=since,
            until=until,
            limit=self.limit * 10,
            order="most_negative",
        )
        top = dedupe_stories(rows)[: self.limit]
        phrases = self._phrases(top)
        return [
            ContextArticle(
                id=a.id,
                title=a.title,
                source=a.source,
                url=a.url,
                published_at=a.published_at,
                sentiment_score=a.sentiment_score,
                topic=a.topic,
                tickers=a.tickers,
                phrases=tuple(phrases.get(a.id, ())),
            )
            for a in top
        ]

    def _phrases(self, articles: list[StoredArticle]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        missing: list[StoredArticle] = []
        for article in articles:
            stored = article.explanation
            if (
                stored
                and stored.get("model_version") == article.model_version
                and stored["sentiment"]["label"] == "negative"
            ):
                out[article.id] = list(stored["sentiment"]["phrases"])
            elif article.title.strip():
                missing.append(article)
        if missing and self._explain:
            explainer = self._get_explainer()
            if explainer is not None:
                explanations = explainer.explain_many([a.title for a in missing], sentiment_class="negative")
                for article, explanation in zip(missing, explanations, strict=True):
                    out[article.id] = list(explanation.sentiment.phrases)
                    if explanation.model_version == article.model_version:
                        self.store.set_explanation(article.id, explanation.to_json())
        return out

    def _get_explainer(self):
        with self._lock:
            if self._explainer is None:
                from models.explain import Explainer

                try:
                    self._explainer = Explainer.from_settings()
                except Exception as exc:  # noqa: BLE001 - no model: articles without phrases
                    log.warning("notify context: no explanations, the model did not load: %s", exc)
                    self._explain = False
                    return None
            return self._explainer
