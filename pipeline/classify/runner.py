"""Build a classifier replica from settings and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
from contextlib import ExitStack

from prometheus_client import CollectorRegistry

from pipeline.classify.reload import ModelWatcher
from pipeline.classify.service import ClassifierService
from pipeline.metrics.definitions import ClassifierMetrics
from pipeline.metrics.server import serve_metrics
from pipeline.settings import ClassifierSettings, KafkaSettings, ModelSettings, StackSettings

log = logging.getLogger(__name__)


def engine_options(settings: ClassifierSettings, model: ModelSettings):
    from models.inference import EngineOptions

    return EngineOptions(
        device=model.device,
        precision=settings.precision,
        batch_size=settings.inference_batch_size,
        long_text=settings.long_text,
        cpu_parallelism=settings.cpu_parallelism,
        max_chunks=settings.max_chunks,
        num_threads=model.torch_threads,
    )


def serve(
    kafka: KafkaSettings | None = None,
    settings: ClassifierSettings | None = None,
    model: ModelSettings | None = None,
    *,
    install_signal_handlers: bool = True,
) -> None:
    """Load the registry's current model, serve /metrics, run the service loop."""
    from models.inference import engine_from_registry
    from models.registry import Registry

    kafka = kafka or KafkaSettings()
    settings = settings or ClassifierSettings()
    model = model or ModelSettings()
    registry = Registry.from_settings(model)
    options = engine_options(settings, model)

    def load(version: str | None):
        return engine_from_registry(
            registry, version, options=options, max_tokens=settings.max_tokens
        )

    classifier = load(None)  # RegistryError when nothing (valid) is promoted: refuse to start
    metrics_registry = CollectorRegistry()
    metrics = ClassifierMetrics(metrics_registry)
    watcher = ModelWatcher(
        registry,
        load,
        serving=classifier.version,
        poll_seconds=settings.reload_poll_seconds,
        on_reload=lambda outcome, version, error: metrics.model_reloads.labels(
            outcome=outcome
        ).inc(),
    )
    service = ClassifierService(
        classifier, kafka=kafka, settings=settings, metrics=metrics, watcher=watcher
    )
    with ExitStack() as stack:
        endpoint = serve_metrics(
            metrics_registry,
            "classifier",
            host=settings.metrics_host,
            port=settings.metrics_port,
            targets_dir=StackSettings().prometheus_targets_dir
            if settings.register_target
            else None,
        )
        stack.callback(endpoint.close)
        watcher.start()
        stack.callback(watcher.close)
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: _request_stop(service))
        service.run()


def _request_stop(service: ClassifierService) -> None:
    if not service.stopping:
        log.info("stop requested: draining the batch in flight, then committing")
    service.stop()
