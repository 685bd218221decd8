"""``finsentry train | predict | evaluate | models ...``: the model's command line.

Heavy imports (torch, transformers) happen inside the commands.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"

models_app = typer.Typer(
    help="The model registry: list, show, promote, roll back; teacher-labels for distillation.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings():
    from pipeline.settings import ModelSettings

    settings = ModelSettings()
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    return settings


def _registry(settings):
    from models.registry import Registry

    return Registry.from_settings(settings)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(version: str | None):
    """The LoadedModel of ``version`` (current when None); exits with a message on failure."""
    from models.loading import load_entry
    from models.registry import RegistryError

    settings = _settings()
    registry = _registry(settings)
    try:
        entry = registry.get(version) if version else registry.current()
        return load_entry(entry, settings.device, base_model_dir=settings.resolved_base_model_dir())
    except RegistryError as exc:
        _fail(str(exc))


def train_command(
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", help="Training config (YAML or JSON)."),  # noqa: B008
    promote: bool = typer.Option(
        True, "--promote/--no-promote", help="Make the new entry current."
    ),
) -> None:
    """Train a model on models/data and add it to the registry (promoted by default)."""
    from models.base import BaseModelError
    from models.config import ConfigError, TrainConfig
    from models.distill import DistillationError
    from models.train import train

    try:
        cfg = TrainConfig.from_file(config)
    except ConfigError as exc:
        _fail(str(exc), 2)
    try:
        entry = train(cfg, _settings(), promote=promote, progress=True)
    except (BaseModelError, DistillationError) as exc:
        _fail(str(exc), 2)
    heldout = entry.metrics["heldout"]
    typer.echo(
        f"added {entry.version}{' (current)' if promote else ''} in "
        f"{entry.metrics['train_seconds']:.0f} s"
    )
    for task, m in heldout.items():
        typer.echo(
            f"  held-out {task:9s} n={m['n']} accuracy={m['accuracy']:.4f} "
            f"macro_f1={m['macro_f1']:.4f} ece={m['ece']:.4f}"
        )


def predict_command(
    texts: list[str] = typer.Argument(..., help="One or more headlines or articles."),  # noqa: B008
    model: str | None = typer.Option(None, "--model", help="Registry version (default: current)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Print topic, sentiment, scores and confidence for each TEXT."""
    from dataclasses import asdict

    loaded = _load(model)
    for text, pred in zip(texts, loaded.predict(texts), strict=True):
        if as_json:
            typer.echo(
                json.dumps(
                    {"text": text, "model_version": loaded.version, **asdict(pred)}, sort_keys=True
                )
            )
        else:
            typer.echo(
                f"{pred.sentiment:8s} score={pred.sentiment_score:+.3f} "
                f"confidence={pred.confidence:.3f} | {pred.topic} ({pred.topic_score:.3f}) | {text}"
            )


def evaluate_command(
    task: str = typer.Option(..., "--task", help="topic or sentiment."),
    data: Path = typer.Option(..., "--data", help="CSV with header text,label."),  # noqa: B008
    model: str | None = typer.Option(None, "--model", help="Registry version (default: current)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Score a model on a labelled CSV: n, accuracy, macro_f1, ECE, per-class P/R/F1."""
    from models.data import DataError, read_labelled_csv
    from models.evaluate import evaluate_file

    if task not in ("topic", "sentiment"):
        _fail(f"evaluate: --task {task!r}: expected topic or sentiment", 2)
    try:
        read_labelled_csv(data, task)  # fail on bad rows before loading the model
    except DataError as exc:
        _fail(str(exc), 2)
    metrics = evaluate_file(_load(model), data, task)
    if as_json:
        typer.echo(json.dumps(metrics, sort_keys=True))
        return
    typer.echo(
        f"{task} on {data} with {metrics['model_version']}: n={metrics['n']} "
        f"accuracy={metrics['accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f} "
        f"ece={metrics['ece']:.4f}"
    )
    for name, c in metrics["per_class"].items():
        if c["support"]:
            typer.echo(
                f"  {name:28s} P={c['precision']:.3f} R={c['recall']:.3f} "
                f"F1={c['f1']:.3f} n={c['support']}"
            )


@models_app.command("teacher-labels")
def teacher_labels_command(
    registry_dir: Path = typer.Option(  # noqa: B008
        ..., "--registry", help="The teacher's registry (its own, not the served one)."
    ),
    version: str | None = typer.Option(None, "--version", help="Teacher entry (default: newest)."),
    out: Path = typer.Option(  # noqa: B008
        Path("models/data/teacher_soft_labels.npz"), "--out", help="Soft-label file to write."
    ),
) -> None:
    """Score the teacher's training split with the teacher: soft labels for distillation.

    A student config then names the file in ``distillation: {labels: FILE}``
    (docs/model.md, "Distillation").
    """
    from models.base import BaseModelError
    from models.distill import DistillationError, teacher_soft_labels, write_soft_labels
    from models.registry import RegistryError

    try:
        texts, topic, sentiment, meta = teacher_soft_labels(registry_dir, version)
        write_soft_labels(out, texts, topic, sentiment, meta)
    except (BaseModelError, RegistryError, DistillationError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {out}: {len(texts)} texts scored by {meta['teacher_version']}")


@models_app.command("list")
def list_command() -> None:
    """Every entry, oldest first; * marks the current one, ! one that cannot be served."""
    registry = _registry(_settings())
    current = registry.current_version()
    for entry in registry.entries():
        problem = registry.problem(entry.version)
        held = entry.metrics.get("heldout", {})
        figures = " ".join(
            f"{t}:acc={m['accuracy']:.3f}/f1={m['macro_f1']:.3f}" for t, m in held.items()
        )
        mark = "*" if entry.version == current else ("!" if problem else " ")
        typer.echo(f"{mark} {entry.version}  {entry.created_at}  {figures}")
        if problem:
            typer.echo(f"    {problem}")


@models_app.command("show")
def show_command(version: str = typer.Argument(None, help="Version (default: current).")) -> None:
    """Print an entry's manifest (JSON)."""
    from models.registry import RegistryError

    registry = _registry(_settings())
    try:
        version = version or registry.current_version()
        if version is None:
            _fail(f"registry {registry.root}: no model promoted yet")
        entry = registry.inspect(version)
    except RegistryError as exc:
        _fail(str(exc))
    problem = registry.problem(version)
    typer.echo(
        json.dumps(
            {
                **entry.manifest,
                "path": str(entry.path),
                "problem": problem,
                "current": version == registry.current_version(),
            },
            sort_keys=True,
            indent=2,
        )
    )


@models_app.command("promote")
def promote_command(version: str = typer.Argument(..., help="Version to make current.")) -> None:
    """Make VERSION current (verified first; refused entries leave current unchanged)."""
    from models.registry import RegistryError

    try:
        entry = _registry(_settings()).promote(version)
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"current: {entry.version}")


@models_app.command("rollback")
def rollback_command() -> None:
    """Return to the previously promoted version."""
    from models.registry import RegistryError

    try:
        entry = _registry(_settings()).rollback()
    except RegistryError as exc:
        _fail(str(exc))
    typer.echo(f"current: {entry.version}")


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("predict")(predict_command)
    app.command("evaluate")(evaluate_command)
    app.add_typer(models_app, name="models")
