"""``python -m pipeline.aggregate [OPTIONS]``: the same command as ``finsentry aggregate``,
without loading every other area's CLI (what test harnesses and containers start)."""

from __future__ import annotations

import logging
import os

import typer

from pipeline.aggregate.cli import register

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_show_locals=False)
register(app)


def main() -> None:
    logging.basicConfig(
        level=getattr(logging, os.environ.get("FINSENTRY_LOG_LEVEL", "INFO")),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kafka", "apache_beam"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()


if __name__ == "__main__":
    main()
