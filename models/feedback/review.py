"""The terminal review loop: one article at a time, one key per label.

Keys: sentiment ``n`` negative, ``u`` neutral, ``p`` positive; topic ``0``-``9``
and ``a``-``j`` for the 20 topics (shown on screen). ``Enter`` confirms the
model's prediction, ``space`` skips, ``q`` quits. Every decision is stored the
moment it is made, so quitting (or a crash) loses nothing.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from models.feedback.queue import Candidate
from models.feedback.store import Label
from models.feedback.vocab import class_names

CONFIRM_KEYS = ("\r", "\n")
SKIP_KEY = " "
QUIT_KEYS = ("q", "\x03", "\x04")  # q, Ctrl-C, Ctrl-D
SENTIMENT_KEYS = {"n": "negative", "u": "neutral", "p": "positive"}
#: Shown at most this many characters of an article (display only; the label keeps all).
DISPLAY_CHARS = 1200


def key_map(task: str) -> dict[str, str]:
    """Key -> class name for ``task``."""
    if task == "sentiment":
        return dict(SENTIMENT_KEYS)
    keys = string.digits + string.ascii_lowercase[:10]
    return dict(zip(keys, class_names("topic"), strict=True))


@dataclass
class ReviewSummary:
    confirmed: int = 0
    corrected: int = 0
    skipped: int = 0
    quit_early: bool = False

    @property
    def labelled(self) -> int:
        return self.confirmed + self.corrected


def legend(task: str) -> str:
    keys = key_map(task)
    parts = [f"[{k}] {name}" for k, name in keys.items()]
    per_line = 3 if task == "sentiment" else 4
    rows = ["   ".join(parts[i : i + per_line]) for i in range(0, len(parts), per_line)]
    rows.append("[Enter] confirm prediction   [space] skip   [q] quit")
    return "\n".join(rows)


def review(
    queue: Iterable[Candidate],
    task: str,
    *,
    read_key: Callable[[], str],
    show: Callable[[str], None],
    save: Callable[[Label], None],
    labeller: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReviewSummary:
    """Walk ``queue``; ``save`` receives each label as it is decided."""
    keys = key_map(task)
    summary = ReviewSummary()
    items = list(queue)
    for position, item in enumerate(items, start=1):
        predicted = item.scores.label(task)
        text = item.article.text
        shown = text if len(text) <= DISPLAY_CHARS else text[:DISPLAY_CHARS] + " [...]"
        show(
            f"\n[{position}/{len(items)}] {item.article.article_id}"
            f"{'  (' + item.article.source + ')' if item.article.source else ''}\n\n{shown}\n\n"
            f"model {item.scores.model_version}: {task} = {predicted} "
            f"(p={item.scores.score(task):.2f}, margin {item.scores.margin(task):.2f})\n"
            f"{legend(task)}"
        )
        while True:
            key = read_key()
            if key in QUIT_KEYS:
                summary.quit_early = True
                return summary
            if key == SKIP_KEY:
                summary.skipped += 1
                show("skipped")
                break
            if key in CONFIRM_KEYS:
                label = predicted
            elif key.lower() in keys:
                label = keys[key.lower()]
            else:
                show(f"key {key!r} means nothing here; {legend(task).splitlines()[-1]}")
                continue
            save(
                Label(
                    article_id=item.article.article_id,
                    task=task,
                    label=label,
                    text=text,
                    labeller=labeller,
                    labelled_at=clock(),
                    source="review",
                    source_ref=None,
                    predicted_label=predicted,
                    predicted_score=item.scores.score(task),
                    model_version=item.scores.model_version,
                )
            )
            if label == predicted:
                summary.confirmed += 1
                show(f"confirmed: {label}")
            else:
                summary.corrected += 1
                show(f"corrected: {predicted} -> {label}")
            break
    return summary
