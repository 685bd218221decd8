"""``finsentry labels import|export|review|stats`` and ``finsentry retrain``."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

labels_app = typer.Typer(
    help="Analysts' labels: import files, export Label Studio tasks, review in the terminal.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _store(settings=None):
    from models.feedback.store import LabelStore
    from pipeline.settings import LabelSettings

    settings = settings or LabelSettings()
    return LabelStore(
        settings.database_url.get_secret_value(), trusted_labellers=settings.trusted_labellers
    )


def _articles(input_file: Path | None, pool: int):
    from models.feedback.queue import read_articles, recent_scored
    from pipeline.settings import KafkaSettings

    if input_file is not None:
        return read_articles(input_file)
    return recent_scored(KafkaSettings(), pool)


@labels_app.command("import")
def import_labels(
    files: Annotated[
        list[Path],
        typer.Argument(exists=True, dir_okay=False, help="CSV, JSONL or Label Studio JSON."),
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv | jsonl | label-studio (default: by extension)."),
    ] = None,
    labeller: Annotated[
        str | None, typer.Option(help="Labeller for rows that do not name one.")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Task of a bare 'label' column: topic | sentiment.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per file.")
    ] = False,
) -> None:
    """Validate label files row by row and store the good rows.

    Bad rows are listed with their line and reason; the good rows are stored
    anyway. Exit status 1 when any row was rejected, 0 otherwise.
    """
    from models.feedback.intake import ImportFailed, read_labels
    from pipeline.settings import LabelSettings

    settings = LabelSettings()
    store = _store(settings)
    rejected = False
    for path in files:
        try:
            report = read_labels(path, fmt=fmt, labeller=labeller or settings.labeller, task=task)
        except ImportFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        result = store.add(report.labels)
        rejected = rejected or bool(report.errors)
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "file": str(path),
                        "format": report.format,
                        "rows": report.rows,
                        "labels_added": result.added,
                        "labels_already_stored": result.duplicates,
                        "rejected_rows": [
                            {"line": e.line, "reason": e.reason} for e in report.errors
                        ],
                    },
                    sort_keys=True,
                )
            )
        else:
            typer.echo(
                f"{path}: {report.rows} rows, {result.added} labels stored, "
                f"{result.duplicates} already stored, {len(report.errors)} rows rejected"
            )
            for error in report.errors:
                typer.echo(f"  {path.name}: {error}", err=True)
    store.close()
    raise typer.Exit(1 if rejected else 0)


@labels_app.command("export")
def export_labels(
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="label-studio (tasks to label) | csv | jsonl (stored labels)."
        ),
    ] = "label-studio",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output file (default: stdout).")
    ] = None,
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Articles (CSV/JSONL); default: recent news.scored."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Tasks to export (default LabelSettings.review_limit).")
    ] = None,
    config_out: Annotated[
        Path | None, typer.Option(help="Also write the Label Studio labelling interface XML here.")
    ] = None,
) -> None:
    """Export Label Studio tasks pre-filled with the current model's predictions,
    the least certain first (class-balanced); or the stored labels as CSV/JSONL."""
    import csv

    from pipeline.settings import LabelSettings

    settings = LabelSettings()
    handle = out.open("w", encoding="utf-8", newline="") if out else sys.stdout
    try:
        if fmt == "label-studio":
            from models.feedback.labelstudio import export_tasks, labeling_config
            from models.feedback.queue import rank, registry_scorer, score_articles

            candidates = score_articles(
                _articles(input_file, settings.review_pool), registry_scorer()
            )
            store = _store(settings)
            queue = rank(
                candidates,
                "sentiment",
                strategy=settings.review_strategy,
                label_counts=store.class_counts("sentiment"),
                exclude=store.labelled_articles("sentiment") & store.labelled_articles("topic"),
                limit=limit or settings.review_limit,
            )
            json.dump(export_tasks(queue), handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            if config_out:
                config_out.write_text(labeling_config(), encoding="utf-8")
            log.info("exported %d Label Studio tasks", len(queue))
        elif fmt in ("csv", "jsonl"):
            resolved = _store(settings).resolved()
            fields = ["article_id", "task", "label", "text", "votes", "conflicting"]
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
                writer.writeheader()
            for item in resolved:
                row = {name: getattr(item, name) for name in fields}
                if fmt == "csv":
                    writer.writerow(row)
                else:
                    handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            typer.echo(f"error: unknown format {fmt!r} (label-studio, csv, jsonl)", err=True)
            raise typer.Exit(2)
    finally:
        if out:
            handle.close()


@labels_app.command("review")
def review_labels(
    task: Annotated[str, typer.Option(help="topic | sentiment")] = "sentiment",
    input_file: Annotated[
        Path | None,
        typer.Option("--input", help="Articles (CSV/JSONL); default: recent news.scored."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(help="Articles this session (default LabelSettings.review_limit).")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="margin | entropy")] = None,
    labeller: Annotated[str | None, typer.Option()] = None,
    drift: Annotated[
        bool,
        typer.Option(help="Favour the drifting slice when the article store shows drift."),
    ] = True,
) -> None:
    """Review what the model is least sure of; one key per label, stored at once.

    When the recent articles in the article store drift from the model's
    training data (what the ModelDrift alert fires on), the first half of the
    queue comes from the drifting classes (--no-drift: off).

    Sentiment: n negative, u neutral, p positive. Topic: 0-9 and a-j (shown).
    Enter confirms the model's prediction, space skips, q quits.
    """
    from models.feedback.queue import drift_favour, rank, registry_scorer, score_articles
    from models.feedback.review import review
    from models.feedback.vocab import TASKS
    from pipeline.settings import LabelSettings

    if task not in TASKS:
        typer.echo(f"error: --task must be one of {TASKS}", err=True)
        raise typer.Exit(2)
    settings = LabelSettings()
    store = _store(settings)
    candidates = score_articles(_articles(input_file, settings.review_pool), registry_scorer())
    focus = _drift_focus() if drift else {}
    if focus:
        typer.echo(
            "model drift: favouring "
            + "; ".join(f"{head} {', '.join(classes)}" for head, classes in focus.items())
        )
    queue = rank(
        candidates,
        task,
        strategy=strategy or settings.review_strategy,
        label_counts=store.class_counts(task),
        exclude=store.labelled_articles(task),
        limit=limit or settings.review_limit,
        favour=drift_favour(focus),
    )
    if not queue:
        typer.echo("nothing to review: every candidate article already has a label")
        return
    summary = review(
        queue,
        task,
        read_key=typer.getchar,
        show=typer.echo,
        save=lambda label: store.add([label]),
        labeller=labeller or settings.labeller,
    )
    typer.echo(
        f"\n{summary.labelled} labels stored ({summary.confirmed} confirmed, "
        f"{summary.corrected} corrected), {summary.skipped} skipped"
    )


def _drift_focus() -> dict[str, list[str]]:
    """The drifting slice from the article store, {} when there is none or no store."""
    from models.registry import Registry
    from pipeline.articles.drift import review_focus, training_distribution
    from pipeline.articles.store import ArticleStore
    from pipeline.settings import ArticleStoreSettings, ModelSettings

    settings = ArticleStoreSettings()
    try:
        model = ModelSettings()
        registry = Registry(model.registry_dir, model.base_model_dir)
        expected = training_distribution(registry.inspect(registry.current_version()))
        store = ArticleStore(settings.database_url.get_secret_value())
        try:
            return review_focus(store, expected, settings)
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - the queue works without drift information
        log.warning("review: no drift information: %s", exc)
        return {}


@labels_app.command("stats")
def label_stats(as_json: bool = typer.Option(False, "--json")) -> None:
    """Labels by source and task, conflicts, and labels since the last retrain."""
    store = _store()
    counts = store.counts_by_source_task()
    resolved = store.resolved()
    data = {
        "labels": {f"{s}/{t}": n for (s, t), n in sorted(counts.items())},
        "articles_labelled": {
            t: sum(1 for r in resolved if r.task == t) for t in ("topic", "sentiment")
        },
        "conflicting": sum(1 for r in resolved if r.conflicting),
        "since_last_retrain": store.labels_since_last_retrain(),
    }
    if as_json:
        typer.echo(json.dumps(data, sort_keys=True))
        return
    for key, n in data["labels"].items():
        typer.echo(f"{key:32s} {n}")
    typer.echo(
        f"articles labelled: {data['articles_labelled']}, conflicting: {data['conflicting']}, "
        f"since last retrain: {data['since_last_retrain']}"
    )


def retrain(
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", help="Keep running: retrain when enough labels arrive or on schedule."
        ),
    ] = False,
    init_from: Annotated[
        str | None, typer.Option(help="current | base (default RetrainSettings.init_from).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Retrain even if no label arrived since the last retrain.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the retrain report as JSON.")
    ] = False,
) -> None:
    """Train a candidate on the original data plus analysts' labels, evaluate it
    against the current model, and promote it only if it passes the gate.

    Gate: better on the held-out new labels, and at most RetrainSettings.max_original_drop
    worse on the original held-out split. The outcome and lineage go to the registry.
    Exit status: 0 promoted (or nothing to do), 1 rejected by the gate, 2 failed.
    """
    from models.feedback.retrain import Retrainer, RetrainError, watch_loop
    from pipeline.settings import LabelSettings, ModelSettings, RetrainSettings

    overrides = {"init_from": init_from} if init_from else {}
    settings = RetrainSettings(**overrides)
    retrainer = Retrainer(_store(LabelSettings()), ModelSettings(), settings)
    if watch:
        watch_loop(retrainer)
        return
    try:
        report = retrainer.run(force=force)
    except RetrainError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True, indent=2, default=str))
    else:
        typer.echo(report.get("summary", json.dumps(report, default=str)))
    raise typer.Exit({"promoted": 0, "skipped": 0, "rejected": 1}.get(report["outcome"], 2))


def register(app: typer.Typer) -> None:
    app.add_typer(labels_app, name="labels")
    app.command("retrain")(retrain)
