"""``finsentry``: the one command-line entry point.

Each area contributes its commands through a ``register(app)`` function in its
own ``cli`` module, listed in ``COMMAND_MODULES``; heavy imports (torch, pyflink)
happen inside the commands, so ``finsentry --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import os

import typer

HELP = """\
finsentry: a streaming financial sentiment monitor.

News flows from feeds or replay files into Kafka (news.raw); a fine-tuned
classifier scores topic and sentiment (news.scored); a Flink job aggregates
event-time windows (sentiment.windows); an exporter turns windows into
Prometheus metrics; Prometheus rules fire on negative spikes and Alertmanager
hands them to the notifier.

\b
Quick start:  make demo        (everything, end to end, on the bundled model)
              make test        (the test suite, against the real servers)

Settings come from FINSENTRY_<SECTION>_<FIELD> environment variables, a
secrets directory (FINSENTRY_SECRETS_DIR) or a YAML file (FINSENTRY_CONFIG);
see docs/ and `finsentry stack status` for the local addresses. A bad setting
stops any command with exit status 2 and names its variable; credentials are
refused in the YAML file.
"""

#: Modules whose ``register(app)`` adds commands; one per area.
COMMAND_MODULES = [
    "pipeline.ingest.cli",
    "pipeline.stack.cli",
    "models.cli",
    "pipeline.metrics.cli",
    "pipeline.notify.cli",
    "pipeline.dashboards.cli",
    "pipeline.classify.cli",
    "models.feedback.cli",
    "pipeline.aggregate.cli",
    "pipeline.demo.cli",
    "pipeline.articles.cli",
    "models.explain_cli",
]

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _configure(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("FINSENTRY_LOG_LEVEL", "INFO"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # kafka-python is chatty at INFO about every connection.
    for noisy in ("kafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def main() -> None:
    from pydantic import ValidationError

    from pipeline.settings import SettingsError, settings_error_message

    try:
        app()
    except SettingsError as exc:
        typer.echo(f"finsentry: {exc}", err=True)
        raise SystemExit(2) from None
    except ValidationError as exc:
        message = settings_error_message(exc)
        if message is None:
            raise
        typer.echo(f"finsentry: {message}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
