"""Label files in: CSV, JSONL and Label Studio JSON exports, validated row by row.

A bad row never stops an import: it is reported with its line number and the
reason, and every good row is kept. Recognised fields (CSV header or JSON keys):

- ``id`` or ``article_id``: the article id; derived from the text when absent
  (the same text always gets the same id);
- ``text``, or ``title`` and ``body`` (joined like ``news.raw``);
- ``topic`` and/or ``sentiment``: the labels; or ``label`` with ``task``, or
  ``label`` alone when the importer is told the task (``--task``). A label is a
  class name, the dataset integer, or Bearish/Bullish/Neutral;
- optional ``labeller`` (``annotator``), ``labelled_at`` (RFC 3339 with a zone;
  defaults to the file's modification time, so re-importing a file adds nothing),
  ``predicted_topic``, ``predicted_sentiment``, ``predicted_score``, ``model_version``.

Label Studio: the full JSON export (tasks with ``annotations``) and JSON-MIN
(flat objects) are both read. Each non-cancelled annotation is one labeller's
label; the task's prediction, when present, is recorded as the model's opinion
at the time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.feedback.store import Label
from models.feedback.vocab import TASKS, UnknownLabel, canonical_label
from pipeline.messages import MAX_BODY_CHARS, MAX_TITLE_CHARS, article_id

FORMATS = ("csv", "jsonl", "label-studio")
MAX_TEXT_CHARS = MAX_TITLE_CHARS + MAX_BODY_CHARS


class ImportFailed(ValueError):
    """The file as a whole cannot be read (missing, wrong format, broken JSON array)."""


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ImportReport:
    path: str
    format: str
    rows: int = 0
    labels: list[Label] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


class BadRow(ValueError):
    pass


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "label-studio"
    raise ImportFailed(f"labels import: cannot tell the format of {path.name}; pass --format")


def text_article_id(text: str) -> str:
    """The id of an article known only by its text (whitespace-insensitive)."""
    return article_id(source="label-text", guid=" ".join(text.split()))


def parse_time(value: Any, *, what: str) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRow(f"{what} {text!r} is not an RFC 3339 time") from None
    if parsed.tzinfo is None:
        raise BadRow(f"{what} {text!r} has no timezone; finsentry wants UTC (suffix Z)")
    return parsed.astimezone(UTC)


def _get(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = row.get(name)
        if value is not None and str(value).strip() != "":
            return value
    return None


def _text_of(row: dict[str, Any]) -> str:
    text = _get(row, "text")
    if text is None:
        title, body = _get(row, "title"), _get(row, "body")
        text = f"{title or ''}\n{body or ''}".strip()
    text = str(text or "").strip()
    if not text:
        raise BadRow("no text (need 'text', or 'title'/'body')")
    if len(text) > MAX_TEXT_CHARS:
        raise BadRow(f"text is {len(text)} characters, limit is {MAX_TEXT_CHARS}")
    return text


def labels_from_row(
    row: dict[str, Any],
    *,
    source: str,
    source_ref: str,
    default_labeller: str,
    default_time: datetime,
    default_task: str | None = None,
) -> list[Label]:
    """Validate one flat row (CSV, JSONL, JSON-MIN) into one label per task it carries."""
    if not isinstance(row, dict):
        raise BadRow(f"expected an object, got {type(row).__name__}")
    text = _text_of(row)
    ident = str(_get(row, "article_id", "id") or text_article_id(text)).strip()
    if len(ident) > 128:
        raise BadRow(f"article id is {len(ident)} characters, limit is 128")
    raw_labels: dict[str, Any] = {}
    for task in TASKS:
        if _get(row, task) is not None:
            raw_labels[task] = _get(row, task)
    if _get(row, "label") is not None:
        task = str(_get(row, "task") or default_task or "").strip().lower()
        if task not in TASKS:
            raise BadRow("'label' needs a 'task' column (topic or sentiment) or --task")
        if task in raw_labels:
            raise BadRow(f"both '{task}' and 'label' given")
        raw_labels[task] = _get(row, "label")
    if not raw_labels:
        raise BadRow("no label (need 'topic', 'sentiment', or 'label')")
    labeller = str(_get(row, "labeller", "labeler", "annotator") or default_labeller).strip()
    if len(labeller) > 128:
        raise BadRow("labeller name is longer than 128 characters")
    when = _get(row, "labelled_at", "labeled_at", "updated_at", "created_at")
    labelled_at = parse_time(when, what="labelled_at") if when is not None else default_time
    score = _get(row, "predicted_score", "confidence")
    try:
        predicted_score = float(score) if score is not None else None
    except ValueError:
        raise BadRow(f"predicted_score {score!r} is not a number") from None
    model_version = _get(row, "model_version")
    labels = []
    for task, value in raw_labels.items():
        try:
            label = canonical_label(task, value)
            predicted = _get(row, f"predicted_{task}")
            predicted = canonical_label(task, predicted) if predicted is not None else None
        except UnknownLabel as exc:
            raise BadRow(str(exc)) from None
        labels.append(
            Label(
                article_id=ident,
                task=task,
                label=label,
                text=text,
                labeller=labeller,
                labelled_at=labelled_at,
                source=source,
                source_ref=source_ref,
                predicted_label=predicted,
                predicted_score=predicted_score if predicted is not None else None,
                model_version=str(model_version) if model_version is not None else None,
            )
        )
    return labels


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise ImportFailed("labels import: the CSV file has no header")
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
    line = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportFailed(f"labels import: CSV line {reader.line_num}: {exc}") from exc
        if None in row:
            row = {**row, "__extra__": row.pop(None)}
        yield line, row
        line = reader.line_num + 1


def _jsonl_rows(text: str) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, BadRow(f"invalid JSON: {exc.msg} at column {exc.colno}")


def _json_array_items(text: str) -> Iterator[tuple[int, Any]]:
    """Items of a JSON array with the line each starts on (for error messages)."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def fail(i: int, msg: str) -> ImportFailed:
        return ImportFailed(f"labels import: line {text.count(chr(10), 0, i) + 1}: {msg}")

    i = skip(0)
    if i >= len(text) or text[i] != "[":
        raise fail(i, "a Label Studio export is a JSON array of tasks")
    i = skip(i + 1)
    if i < len(text) and text[i] == "]":
        return
    while True:
        try:
            item, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"invalid JSON: {exc.msg}") from exc
        yield text.count("\n", 0, i) + 1, item
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i < len(text) and text[i] == "]":
            return
        else:
            raise fail(i, "expected ',' or ']' between tasks")


def _labelstudio_labeller(annotation: dict[str, Any]) -> str:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("username") or who.get("id")
    return f"labelstudio:{who}" if who is not None else "labelstudio"


def labels_from_labelstudio_task(
    task: dict[str, Any], *, source_ref: str, default_time: datetime
) -> list[Label]:
    """One label per task and labeller for each non-cancelled annotation."""
    if not isinstance(task, dict):
        raise BadRow(f"expected a task object, got {type(task).__name__}")
    data = task.get("data")
    if not isinstance(data, dict):
        raise BadRow("task has no 'data' object")
    text = _text_of(data)
    ident = str(_get(data, "article_id", "id") or text_article_id(text)).strip()
    predicted: dict[str, tuple[str, float | None, str | None]] = {}
    for prediction in task.get("predictions") or []:
        if not isinstance(prediction, dict):
            continue
        for result in prediction.get("result") or []:
            name = result.get("from_name") if isinstance(result, dict) else None
            choices = (result.get("value") or {}).get("choices") if name in TASKS else None
            if choices:
                try:
                    label = canonical_label(name, choices[0])
                except UnknownLabel:
                    continue
                score = result.get("score", prediction.get("score"))
                predicted[name] = (label, score, prediction.get("model_version"))
    labels: list[Label] = []
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        raise BadRow("'annotations' is not a list")
    for annotation in annotations:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        when = annotation.get("updated_at") or annotation.get("created_at")
        labelled_at = parse_time(when, what="annotation time") if when else default_time
        labeller = _labelstudio_labeller(annotation)
        for result in annotation.get("result") or []:
            name = result.get("from_name") if isinstance(result, dict) else None
            if name not in TASKS:
                continue
            choices = (result.get("value") or {}).get("choices") or []
            if len(choices) != 1:
                raise BadRow(f"{name}: expected exactly one choice, got {choices!r}")
            try:
                label = canonical_label(name, choices[0])
            except UnknownLabel as exc:
                raise BadRow(str(exc)) from None
            guess = predicted.get(name)
            labels.append(
                Label(
                    article_id=ident,
                    task=name,
                    label=label,
                    text=text,
                    labeller=labeller,
                    labelled_at=labelled_at,
                    source="label-studio",
                    source_ref=f"{source_ref} annotation {annotation.get('id')}",
                    predicted_label=guess[0] if guess else None,
                    predicted_score=float(guess[1]) if guess and guess[1] is not None else None,
                    model_version=guess[2] if guess else None,
                )
            )
    return labels


def read_labels(
    path: Path,
    *,
    fmt: str | None = None,
    labeller: str,
    task: str | None = None,
) -> ImportReport:
    """Parse and validate a label file; the report holds the good labels and the bad lines."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ImportFailed(f"labels import: unknown format {fmt!r}; expected one of {FORMATS}")
    try:
        text = path.read_text(encoding="utf-8-sig")
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFailed(f"labels import: cannot read {path}: {exc}") from exc
    report = ImportReport(path=str(path), format=fmt)
    if fmt == "csv":
        items = _csv_rows(text)
    elif fmt == "jsonl":
        items = _jsonl_rows(text)
    else:
        items = _json_array_items(text)
    for line, item in items:
        report.rows += 1
        ref = f"{path.name}:{line}"
        try:
            if isinstance(item, BadRow):
                raise item
            if fmt == "csv" and item.get("__extra__"):
                raise BadRow(f"{len(item['__extra__'])} more fields than the header has")
            if fmt == "label-studio" and isinstance(item, dict) and "annotations" in item:
                report.labels.extend(
                    labels_from_labelstudio_task(item, source_ref=ref, default_time=mtime)
                )
            else:
                report.labels.extend(
                    labels_from_row(
                        item,
                        source=fmt,
                        source_ref=ref,
                        default_labeller=labeller,
                        default_time=mtime,
                        default_task=task,
                    )
                )
        except BadRow as exc:
            report.errors.append(RowError(line, str(exc)))
    return report
