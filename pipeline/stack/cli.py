"""``finsentry stack up | down | status`` and ``finsentry topics``."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    stack = typer.Typer(help="Start, stop and inspect the local Kafka, Prometheus and Alertmanager.",
                        no_args_is_help=True)

    @stack.command("up")
    def up() -> None:
        """Install what is missing, start every server on loopback, wait until ready.

        Idempotent: servers already running are left alone. Logs and PIDs are in
        FINSENTRY_STACK_RUN_DIR (default ~/.finsentry/run).
        """
        from pipeline.stack import LocalStack, StackError

        try:
            with console.status("starting the local stack (first run installs jars and packages)"):
                statuses = LocalStack().up()
        except StackError as exc:
            console.print(f"[red]stack up failed:[/red] {exc}")
            raise typer.Exit(1) from exc
        _print(statuses)

    @stack.command("install")
    def install() -> None:
        """Resolve the Kafka and Flink connector jars (Maven) and the Debian packages, once."""
        from pipeline.settings import StackSettings
        from pipeline.stack import StackError
        from pipeline.stack.install import install_all

        try:
            install_all(StackSettings().cache_dir)
        except StackError as exc:
            console.print(f"[red]install failed:[/red] {exc}")
            raise typer.Exit(1) from exc
        console.print("stack components installed")

    @stack.command("down")
    def down() -> None:
        """Stop exactly the servers that `stack up` started (by PID)."""
        from pipeline.stack import LocalStack

        stopped = LocalStack().down()
        console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")

    @stack.command("status")
    def status() -> None:
        """Show each server's PID, address and readiness."""
        from pipeline.stack import LocalStack

        _print(LocalStack().status())

    app.add_typer(stack, name="stack")

    @app.command("topics")
    def topics(
        partitions: int = typer.Option(None, help="Partitions for new topics (default: settings)."),
    ) -> None:
        """Create finsentry's topics (news.raw, news.scored, news.dlq, sentiment.windows) if missing."""
        from pipeline.kafka_io import ensure_topics
        from pipeline.settings import KafkaSettings

        settings = KafkaSettings()
        created = ensure_topics(settings, partitions=partitions)
        console.print(f"created: {created or 'none'}; all: {settings.all_topics()}")


def _print(statuses) -> None:
    table = Table("server", "pid", "address", "ready")
    for s in statuses:
        table.add_row(s.name, str(s.pid or "-"), s.address, "yes" if s.ready else "no")
    console.print(table)
