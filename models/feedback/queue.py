"""What to label next: articles the model is least sure of, with class balance.

Candidates are recent articles with the model's full probability distribution
per head (``news.scored`` carries only the winning class, so the current model
re-scores the texts). Ranking, per task:

1. drop articles that already carry a label for the task;
2. uncertainty per article: ``margin`` (p1 - p2, small = unsure; default) or
   ``entropy`` of the head's distribution;
3. class balance: articles are bucketed by predicted class and drawn one at a
   time from the bucket whose class has the fewest labels so far (stored labels
   plus those already queued), most uncertain first within a bucket, so that
   a queue is not fifty "neutral" in a row and rare classes get labels.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.feedback.intake import ImportFailed, text_article_id
from models.feedback.vocab import class_names

log = logging.getLogger(__name__)

STRATEGIES = ("margin", "entropy")


@dataclass(frozen=True)
class Article:
    article_id: str
    text: str
    source: str = ""


@dataclass(frozen=True)
class Scores:
    """A model's calibrated distributions over each head's classes (canonical order)."""

    topic: tuple[float, ...]
    sentiment: tuple[float, ...]
    model_version: str

    def probs(self, task: str) -> tuple[float, ...]:
        return self.topic if task == "topic" else self.sentiment

    def label(self, task: str) -> str:
        probs = self.probs(task)
        return class_names(task)[max(range(len(probs)), key=probs.__getitem__)]

    def score(self, task: str) -> float:
        return max(self.probs(task))

    def margin(self, task: str) -> float:
        top = sorted(self.probs(task), reverse=True)
        return top[0] - top[1]

    def entropy(self, task: str) -> float:
        return -sum(p * math.log(p) for p in self.probs(task) if p > 0)

    def uncertainty(self, task: str, strategy: str) -> float:
        """Larger means less sure."""
        if strategy == "margin":
            return 1.0 - self.margin(task)
        if strategy == "entropy":
            return self.entropy(task)
        raise ValueError(f"review queue: unknown strategy {strategy!r}; expected {STRATEGIES}")


@dataclass(frozen=True)
class Candidate:
    article: Article
    scores: Scores


#: Scores texts: one Scores per text, in order.
Scorer = Callable[[Sequence[str]], list[Scores]]


def score_articles(articles: Sequence[Article], scorer: Scorer) -> list[Candidate]:
    scores = scorer([a.text for a in articles]) if articles else []
    return [Candidate(a, s) for a, s in zip(articles, scores, strict=True)]


def rank(
    candidates: Iterable[Candidate],
    task: str,
    *,
    strategy: str = "margin",
    label_counts: Counter | None = None,
    exclude: set[str] = frozenset(),
    limit: int | None = None,
    favour: Callable[[Candidate], bool] | None = None,
    favour_share: float = 0.5,
) -> list[Candidate]:
    """The review order for ``task`` (module docstring); at most ``limit`` items.

    ``favour`` (e.g. the model's drifting slice, :func:`drift_favour`): matching
    candidates fill the first ``favour_share`` of the queue, ranked as above;
    the rest of the queue is ranked over everything else.
    """
    if favour is not None:
        pool = [c for c in candidates if c.article.article_id not in exclude]
        favoured = [c for c in pool if favour(c)]
        total = len({c.article.article_id for c in pool})
        wanted = total if limit is None else min(limit, total)
        first = rank(
            favoured,
            task,
            strategy=strategy,
            label_counts=label_counts,
            limit=math.ceil(wanted * favour_share),
        )
        counts = Counter(label_counts or {})
        counts.update(c.scores.label(task) for c in first)
        rest = rank(
            pool,
            task,
            strategy=strategy,
            label_counts=counts,
            exclude={c.article.article_id for c in first},
            limit=wanted - len(first),
        )
        return first + rest
    if strategy not in STRATEGIES:
        raise ValueError(f"review queue: unknown strategy {strategy!r}; expected {STRATEGIES}")
    seen: set[str] = set()
    buckets: dict[str, list[Candidate]] = {}
    for item in candidates:
        if item.article.article_id in exclude or item.article.article_id in seen:
            continue
        seen.add(item.article.article_id)
        buckets.setdefault(item.scores.label(task), []).append(item)
    for bucket in buckets.values():
        bucket.sort(key=lambda c: (-c.scores.uncertainty(task, strategy), c.article.article_id))
    counts = Counter(label_counts or {})
    order = {name: i for i, name in enumerate(class_names(task))}
    queue: list[Candidate] = []
    positions = dict.fromkeys(buckets, 0)
    total = sum(len(b) for b in buckets.values())
    wanted = total if limit is None else min(limit, total)
    while len(queue) < wanted:
        open_labels = [k for k in buckets if positions[k] < len(buckets[k])]
        pick = min(
            open_labels,
            key=lambda k: (
                counts[k],
                -buckets[k][positions[k]].scores.uncertainty(task, strategy),
                order[k],
            ),
        )
        queue.append(buckets[pick][positions[pick]])
        positions[pick] += 1
        counts[pick] += 1
    return queue


def drift_favour(focus: dict[str, list[str]]) -> Callable[[Candidate], bool] | None:
    """Candidates in the drifting slice: predicted as a drifting class of any head.

    ``focus`` is ``pipeline.articles.drift.review_focus`` (head -> classes); None
    when nothing drifts.
    """
    if not any(focus.values()):
        return None
    return lambda c: any(c.scores.label(head) in classes for head, classes in focus.items())


def read_articles(path: Path) -> list[Article]:
    """Articles from a CSV or JSONL file (``id``, ``text`` or ``title``/``body``, ``source``).

    Takes ``news.raw`` / ``news.scored`` dumps and label files alike; rows without
    text are skipped with a warning.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed(f"review: cannot read {path}: {exc}") from exc
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        rows = []
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    log.warning("review: %s:%d skipped: %s", path.name, number, exc.msg)
    articles = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        body = row.get("text") or f"{row.get('title') or ''}\n{row.get('body') or ''}".strip()
        if not body:
            continue
        ident = str(row.get("article_id") or row.get("id") or text_article_id(body))
        articles.append(Article(ident, body, str(row.get("source") or "")))
    return articles


def recent_scored(kafka_settings, limit: int, *, timeout_ms: int = 5_000) -> list[Article]:
    """The last ``limit`` articles of ``news.scored`` (title only; body is not carried)."""
    from kafka import TopicPartition

    from pipeline.kafka_io import make_consumer
    from pipeline.messages import InvalidMessage, decode_scored

    consumer = make_consumer(kafka_settings, None)
    try:
        topic = kafka_settings.topic_scored
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        # Up to ``limit`` from every partition (keys spread unevenly), newest kept below.
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - limit))
        found: dict[str, tuple[Any, Article]] = {}
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        while remaining:
            batch = consumer.poll(timeout_ms=timeout_ms)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    try:
                        scored = decode_scored(record.value, stage="review")
                    except InvalidMessage as exc:
                        log.warning("review: skipped %s offset %d: %s", tp, record.offset, exc)
                        continue
                    if scored.title:
                        article = Article(scored.id, scored.title, scored.source)
                        found[scored.id] = (scored.scored_at, article)
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        newest = sorted(found.values(), key=lambda item: item[0])[-limit:]
        return [article for _, article in newest]
    finally:
        consumer.close()


def registry_scorer(settings=None) -> Scorer:
    """Scores with the registry's current model (``ModelSettings``)."""
    import torch

    from models.loading import load_current
    from pipeline.settings import ModelSettings

    settings = settings or ModelSettings()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    loaded = load_current(settings)

    def score(texts: Sequence[str]) -> list[Scores]:
        probs = loaded.predict_proba(list(texts))
        return [
            Scores(tuple(map(float, t)), tuple(map(float, s)), loaded.version)
            for t, s in zip(probs["topic"], probs["sentiment"], strict=True)
        ]

    return score
