"""``finsentry aggregate``: run the Flink windowed aggregation job."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("aggregate")
    def aggregate(
        restore: Annotated[
            str,
            typer.Option(
                help="auto: resume from the newest retained checkpoint in "
                "FINSENTRY_AGGREGATE_CHECKPOINT_DIR if there is one; none: start without state; "
                "or the path of a checkpoint (chk-N) or savepoint directory."
            ),
        ] = "auto",
        remote: Annotated[
            bool,
            typer.Option(
                "--remote",
                help="Submit to the Flink cluster at FINSENTRY_AGGREGATE_JOBMANAGER_ADDRESS and "
                "exit instead of running a local mini-cluster.",
            ),
        ] = False,
        status_file: Annotated[
            Path | None,
            typer.Option(help="Write the job id and state here as JSON whenever they change."),
        ] = None,
        print_sql: Annotated[
            bool, typer.Option("--print-sql", help="Print the job's SQL and exit.")
        ] = False,
        explain: Annotated[
            bool, typer.Option("--explain", help="Print Flink's plan and exit.")
        ] = False,
    ) -> None:
        """Windowed sentiment aggregation: news.scored -> Flink SQL -> sentiment.windows.

        De-duplicates articles by id (and duplicate_of), assigns event time from
        published_at with a bounded out-of-orderness watermark, counts tumbling and
        hopping windows per all/topic/ticker, and writes them exactly once (Kafka
        transactions committed on each checkpoint: read sentiment.windows with
        isolation_level=read_committed). Records behind the watermark go to the
        late topic, invalid ones to news.dlq.

        Locally the job runs in a Flink mini-cluster in this process until stopped;
        SIGTERM or Ctrl-C stops it with a savepoint (its path is logged). Killed
        outright, the next start resumes from the newest retained checkpoint.
        Settings: FINSENTRY_AGGREGATE_* (see docs/aggregate.md).
        """
        from pipeline.aggregate.job import AggregateJobError, run_job
        from pipeline.aggregate.sql import build
        from pipeline.settings import AggregateSettings, KafkaSettings

        kafka, settings = KafkaSettings(), AggregateSettings()
        if print_sql:
            typer.echo(build(kafka, settings).script())
            return
        if explain:
            from pipeline.aggregate.job import explain as explain_plan
            from pipeline.settings import StackSettings
            from pipeline.stack.install import flink_connector_jars

            typer.echo(
                explain_plan(kafka, settings, flink_connector_jars(StackSettings().cache_dir))
            )
            return
        try:
            started = run_job(
                kafka, settings, restore=restore, remote=remote, status_file=status_file
            )
        except AggregateJobError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
        if remote:
            typer.echo(f"submitted job {started.job_id} to {settings.jobmanager_address}")
