"""``finsentry classify``: the classifier service (one replica of the consumer group)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    @app.command("classify")
    def classify(
        precision: str = typer.Option(
            None,
            help="auto | fp32 | bf16 | fp16 (CUDA) | int8 | openvino | openvino-int8 (CPU). "
            "Default: settings (auto).",
        ),
        device: str = typer.Option(
            None, help="auto | cpu | cuda | cuda:N. Default: FINSENTRY_MODEL_DEVICE."
        ),
        batch_size: int = typer.Option(None, help="Records per micro-batch."),
        max_wait_ms: int = typer.Option(None, help="Longest a record waits for its batch (ms)."),
        group_id: str = typer.Option(None, help="Kafka consumer group shared by the replicas."),
        metrics_port: int = typer.Option(None, help="Port of /metrics (0: any free port)."),
    ) -> None:
        """Score news.raw into news.scored until SIGTERM; bad records go to news.dlq.

        The model is the registry's current entry (FINSENTRY_MODEL_REGISTRY_DIR);
        a newly promoted entry is loaded in the background and switched in
        between two batches. Offsets are committed only after the output is
        acknowledged, so a crash re-scores at most one batch. Every option also
        reads FINSENTRY_CLASSIFIER_<OPTION> (e.g. FINSENTRY_CLASSIFIER_BATCH_SIZE).

        A Kafka outage is ridden out for
        FINSENTRY_CLASSIFIER_BROKER_OUTAGE_TOLERANCE_SECONDS (default 600): start-up
        waits for the broker, and a batch whose output is not acknowledged within
        FINSENTRY_CLASSIFIER_PRODUCE_TIMEOUT_SECONDS is sent again, its offsets
        uncommitted until Kafka acknowledges it.

        Exit status: 0 after SIGTERM/SIGINT (batch drained and committed); 2 when
        it cannot start (no valid model promoted); 3 when Kafka stays unreachable
        or does not acknowledge a batch's output for longer than the tolerance, or
        a stop is requested while it is away (nothing committed: restarted, it
        scores that batch again).
        """
        from pipeline.classify.runner import serve
        from pipeline.settings import ClassifierSettings, ModelSettings

        overrides = {
            key: value
            for key, value in {
                "precision": precision,
                "batch_size": batch_size,
                "max_wait_ms": max_wait_ms,
                "group_id": group_id,
                "metrics_port": metrics_port,
            }.items()
            if value is not None
        }
        from models.inference import EngineError
        from models.registry import RegistryError
        from pipeline.classify.service import KafkaUnavailableError

        settings = ClassifierSettings(**overrides)
        model = ModelSettings(**({"device": device} if device else {}))
        try:
            serve(settings=settings, model=model)
        except (RegistryError, EngineError) as exc:
            typer.echo(f"classify: cannot start: {exc}", err=True)
            raise typer.Exit(2) from exc
        except KafkaUnavailableError as exc:
            typer.echo(f"classify: stopped: {exc}", err=True)
            raise typer.Exit(3) from exc
