"""The label store: every label an analyst gave, with who, when, where from, and what
the model said at the time; plus the history of retrains.

SQLAlchemy 2: SQLite by default (``~/.finsentry/labels.db``), any database URL
(PostgreSQL) when configured. Tables are created on first use.

One row is one label for one task of one article. A row that carries both a
topic and a sentiment becomes two labels. Nothing is overwritten: an analyst who
changes their mind adds a newer row, and conflicting labels are all kept.

Conflict rule (:func:`resolve`), per article and task:

1. each labeller's *latest* label is that labeller's vote (earlier ones are
   history);
2. if any trusted labeller voted (``LabelSettings.trusted_labellers``), only
   trusted votes count;
3. the label with the most votes wins; a tie goes to the label whose most
   recent vote is newest.

Re-importing the same file is harmless: a label identical in article, task,
label, labeller, time and source to one already stored is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    Text,
    create_engine,
    func,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from pipeline.db import UtcDateTime, create_schema

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class LabelRow(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    article_id: Mapped[str] = mapped_column(String(128), index=True)
    task: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    labeller: Mapped[str] = mapped_column(String(128))
    labelled_at: Mapped[datetime] = mapped_column(UtcDateTime)
    source: Mapped[str] = mapped_column(String(32), index=True)
    source_ref: Mapped[str | None] = mapped_column(String(512), nullable=True)
    predicted_label: Mapped[str | None] = mapped_column(String(64), nullable=True)
    predicted_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RetrainRow(Base):
    __tablename__ = "retrains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # running | promoted | rejected | failed
    parent_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    candidate_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    max_label_id: Mapped[int] = mapped_column(Integer)
    snapshot_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    report_json: Mapped[str] = mapped_column(Text, default="{}")

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.report_json or "{}")


@dataclass(frozen=True)
class Label:
    """One label as it enters the store (validated by the intake)."""

    article_id: str
    task: str
    label: str
    text: str
    labeller: str
    labelled_at: datetime
    source: str
    source_ref: str | None = None
    predicted_label: str | None = None
    predicted_score: float | None = None
    model_version: str | None = None

    def fingerprint(self) -> str:
        basis = "\x1f".join(
            (
                self.article_id,
                self.task,
                self.label,
                self.labeller,
                self.labelled_at.astimezone(UTC).isoformat(),
                self.source,
            )
        )
        return hashlib.sha256(basis.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ResolvedLabel:
    """The label an article carries for one task after the conflict rule."""

    article_id: str
    task: str
    label: str
    text: str
    votes: int
    conflicting: bool
    latest_id: int


@dataclass
class AddResult:
    added: int = 0
    duplicates: int = 0
    by_source_task: Counter = field(default_factory=Counter)


def default_database_url() -> str:
    return f"sqlite:///{Path.home() / '.finsentry' / 'labels.db'}"


def resolve(rows: Sequence[LabelRow], trusted: Iterable[str] = ()) -> list[ResolvedLabel]:
    """Apply the conflict rule (module docstring) to rows of any articles and tasks."""
    trusted = set(trusted)
    groups: dict[tuple[str, str], list[LabelRow]] = defaultdict(list)
    for row in rows:
        groups[(row.article_id, row.task)].append(row)
    resolved = []
    for (article, task), group in groups.items():
        latest_by_labeller: dict[str, LabelRow] = {}
        for row in sorted(group, key=lambda r: (r.labelled_at, r.id)):
            latest_by_labeller[row.labeller] = row
        votes = list(latest_by_labeller.values())
        trusted_votes = [v for v in votes if v.labeller in trusted]
        if trusted_votes:
            votes = trusted_votes
        tally = Counter(v.label for v in votes)
        newest = {
            label: max((v.labelled_at, v.id) for v in votes if v.label == label) for label in tally
        }
        winner = max(tally, key=lambda label: (tally[label], newest[label]))
        newest_row = max(group, key=lambda r: (r.labelled_at, r.id))
        resolved.append(
            ResolvedLabel(
                article_id=article,
                task=task,
                label=winner,
                text=newest_row.text,
                votes=tally[winner],
                conflicting=len({r.label for r in group}) > 1,
                latest_id=max(r.id for r in group),
            )
        )
    resolved.sort(key=lambda r: (r.task, r.article_id))
    return resolved


def snapshot_hash(labels: Sequence[ResolvedLabel]) -> str:
    """A content hash of resolved labels (article, task, label, text), order-independent."""
    digest = hashlib.sha256()
    for item in sorted(labels, key=lambda r: (r.task, r.article_id)):
        digest.update("\x1f".join((item.task, item.article_id, item.label, item.text)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


class LabelStore:
    """All access to the label database goes through here."""

    def __init__(self, url: str | None = None, *, trusted_labellers: Iterable[str] = ()) -> None:
        url = url or default_database_url()
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, future=True)
        self.trusted_labellers = frozenset(trusted_labellers)
        create_schema(Base.metadata, self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # labels ---------------------------------------------------------------

    def add(self, labels: Iterable[Label]) -> AddResult:
        """Store labels in one transaction; exact repeats are skipped, not duplicated."""
        result = AddResult()
        now = datetime.now(UTC)
        labels = list(labels)
        with Session(self.engine) as session, session.begin():
            prints = [item.fingerprint() for item in labels]
            existing: set[str] = set()
            for start in range(0, len(prints), 500):
                chunk = prints[start : start + 500]
                existing.update(
                    session.scalars(
                        select(LabelRow.fingerprint).where(LabelRow.fingerprint.in_(chunk))
                    )
                )
            for item, fingerprint in zip(labels, prints, strict=True):
                if fingerprint in existing:
                    result.duplicates += 1
                    continue
                existing.add(fingerprint)
                session.add(LabelRow(**item.__dict__, fingerprint=fingerprint, stored_at=now))
                result.added += 1
                result.by_source_task[(item.source, item.task)] += 1
        return result

    def rows(self, *, task: str | None = None, max_id: int | None = None) -> list[LabelRow]:
        query = select(LabelRow).order_by(LabelRow.id)
        if task is not None:
            query = query.where(LabelRow.task == task)
        if max_id is not None:
            query = query.where(LabelRow.id <= max_id)
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(query))

    def resolved(
        self, *, task: str | None = None, max_id: int | None = None
    ) -> list[ResolvedLabel]:
        return resolve(self.rows(task=task, max_id=max_id), self.trusted_labellers)

    def max_label_id(self) -> int:
        with Session(self.engine) as session:
            return session.scalar(select(func.max(LabelRow.id))) or 0

    def labelled_articles(self, task: str) -> set[str]:
        with Session(self.engine) as session:
            return set(session.scalars(select(LabelRow.article_id).where(LabelRow.task == task)))

    def counts_by_source_task(self) -> dict[tuple[str, str], int]:
        query = select(LabelRow.source, LabelRow.task, func.count()).group_by(
            LabelRow.source, LabelRow.task
        )
        with Session(self.engine) as session:
            return {(source, task): n for source, task, n in session.execute(query)}

    def class_counts(self, task: str) -> Counter:
        return Counter(item.label for item in self.resolved(task=task))

    # retrains ---------------------------------------------------------------

    def start_retrain(self, *, parent_version: str | None, max_label_id: int) -> int:
        with Session(self.engine) as session, session.begin():
            row = RetrainRow(
                started_at=datetime.now(UTC),
                outcome="running",
                parent_version=parent_version,
                max_label_id=max_label_id,
            )
            session.add(row)
            session.flush()
            return row.id

    def finish_retrain(
        self,
        run_id: int,
        *,
        outcome: str,
        candidate_version: str | None,
        snapshot: str | None,
        report: dict[str, Any],
    ) -> None:
        with Session(self.engine) as session, session.begin():
            row = session.get(RetrainRow, run_id)
            row.finished_at = datetime.now(UTC)
            row.outcome = outcome
            row.candidate_version = candidate_version
            row.snapshot_hash = snapshot
            row.report_json = json.dumps(report, sort_keys=True, default=str)

    def retrains(self) -> list[RetrainRow]:
        with Session(self.engine, expire_on_commit=False) as session:
            return list(session.scalars(select(RetrainRow).order_by(RetrainRow.id)))

    def last_retrain(self) -> RetrainRow | None:
        """The most recent finished retrain (promoted, rejected or failed)."""
        query = (
            select(RetrainRow)
            .where(RetrainRow.finished_at.is_not(None))
            .order_by(RetrainRow.id.desc())
            .limit(1)
        )
        with Session(self.engine, expire_on_commit=False) as session:
            return session.scalars(query).first()

    def labels_since_last_retrain(self) -> int:
        last = self.last_retrain()
        floor = last.max_label_id if last is not None else 0
        with Session(self.engine) as session:
            return session.scalar(select(func.count()).where(LabelRow.id > floor)) or 0

    def retrain_outcomes(self) -> dict[str, int]:
        query = select(RetrainRow.outcome, func.count()).group_by(RetrainRow.outcome)
        with Session(self.engine) as session:
            return dict(session.execute(query).all())
