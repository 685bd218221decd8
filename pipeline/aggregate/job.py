"""Run the aggregation job: Flink configuration, submission, restore, savepoint on stop.

``run_job`` is what ``finsentry aggregate`` calls. Locally it starts a Flink
mini-cluster inside this process's JVM and blocks until the job ends; with
``remote=True`` it submits the same SQL to an existing cluster and returns.
"""

from __future__ import annotations

import json
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.aggregate.checkpoints import latest_checkpoint, local_path, prune_older_runs, to_uri
from pipeline.aggregate.sql import JobSql, build
from pipeline.settings import AggregateSettings, KafkaSettings, StackSettings

log = logging.getLogger(__name__)

TERMINAL_STATES = {"FINISHED", "CANCELED", "FAILED"}


class AggregateJobError(RuntimeError):
    """The aggregation job could not be configured, submitted or kept running."""


@dataclass(frozen=True)
class Started:
    """What a status file and the log say about a submitted job."""

    job_id: str
    restored_from: str | None
    remote: bool


def flink_config(
    settings: AggregateSettings,
    jars: list[Path],
    *,
    restore_from: str | None = None,
    remote: bool = False,
) -> dict[str, str]:
    """The Flink configuration of the job (Flink 2.x option keys)."""
    config = {
        "pipeline.name": settings.job_name,
        "pipeline.jars": ";".join(p.resolve().as_uri() for p in jars),
        "parallelism.default": str(settings.parallelism),
        "execution.runtime-mode": "streaming",
        "execution.checkpointing.interval": f"{settings.checkpoint_interval_ms} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": str(settings.checkpoints_retained),
        "execution.checkpointing.min-pause": f"{min(settings.checkpoint_interval_ms // 2, 1000)}ms",
        "state.backend.type": "hashmap",
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": f"{settings.source_idle_timeout_ms} ms",
        "table.exec.state.ttl": f"{settings.dedupe_ttl_ms} ms",
        # Operator uids from the planner's node ids, so that the same SQL maps its
        # state onto the same operators when restored from a checkpoint or savepoint.
        "table.exec.uid.generation": "ALWAYS",
        "restart-strategy.type": "exponential-delay",
    }
    # On a cluster, directories this machine's defaults point to mean nothing to the
    # TaskManagers: unless set explicitly, the cluster's own configuration applies.
    for field, key in (
        ("checkpoint_dir", "execution.checkpointing.dir"),
        ("savepoint_dir", "execution.checkpointing.savepoint-dir"),
    ):
        if not remote or field in settings.model_fields_set:
            config[key] = to_uri(getattr(settings, field))
    if restore_from:
        config["execution.state-recovery.path"] = restore_from
        config["execution.state-recovery.ignore-unclaimed-state"] = "false"
    if remote:
        if not settings.jobmanager_address:
            raise AggregateJobError(
                "aggregate: --remote needs FINSENTRY_AGGREGATE_JOBMANAGER_ADDRESS "
                "(host:port of the JobManager's REST endpoint)"
            )
        host, _, port = settings.jobmanager_address.rpartition(":")
        if not host or not port.isdigit():
            raise AggregateJobError(
                f"aggregate: jobmanager_address {settings.jobmanager_address!r} is not host:port"
            )
        config.update({"execution.target": "remote", "rest.address": host, "rest.port": port})
    return config


def table_environment(config: dict[str, str]):
    """A streaming TableEnvironment with ``config`` applied (imports pyflink)."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    for key, value in config.items():
        conf.set_string(key, value)
    env_settings = (
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )
    root = logging.getLogger()
    level = root.level
    t_env = TableEnvironment.create(env_settings)
    root.setLevel(level)  # importing apache_beam through pyflink resets the root level to WARNING
    return t_env


def statement_set(t_env, job: JobSql):
    for statement in job.ddl:
        t_env.execute_sql(statement)
    statements = t_env.create_statement_set()
    for insert in job.inserts:
        statements.add_insert_sql(insert)
    return statements


def explain(kafka: KafkaSettings, settings: AggregateSettings, jars: list[Path]) -> str:
    """The optimized plan of the job, as Flink prints it (nothing is submitted)."""
    t_env = table_environment(flink_config(settings, jars))
    return statement_set(t_env, build(kafka, settings)).explain()


def resolve_restore(
    settings: AggregateSettings, restore: str, *, remote: bool = False
) -> str | None:
    """``auto``: the newest retained checkpoint, if any; ``none``; or an explicit path.

    With ``remote``, ``auto`` only searches a checkpoint directory set explicitly (the
    local default is not where a cluster writes)."""
    if restore == "none":
        return None
    if restore == "auto":
        if remote and "checkpoint_dir" not in settings.model_fields_set:
            return None
        found = latest_checkpoint(settings.checkpoint_dir)
        return to_uri(str(found)) if found else None
    path = local_path(restore)
    if path is not None and not (path / "_metadata").exists():
        raise AggregateJobError(f"aggregate: no checkpoint or savepoint (_metadata) in {restore!r}")
    return to_uri(restore)


def run_job(
    kafka: KafkaSettings,
    settings: AggregateSettings,
    *,
    restore: str = "auto",
    remote: bool = False,
    status_file: Path | None = None,
    jars: list[Path] | None = None,
) -> Started:
    """Submit the job; locally, block until it ends or SIGTERM/SIGINT stops it with a savepoint."""
    from pipeline.kafka_io import ensure_topics
    from pipeline.stack.install import flink_connector_jars

    jars = jars or flink_connector_jars(StackSettings().cache_dir)
    ensure_topics(
        kafka, [kafka.topic_scored, kafka.topic_windows, kafka.topic_dlq, settings.topic_late]
    )
    restored_from = resolve_restore(settings, restore, remote=remote)
    if restored_from:
        log.info("restoring from %s", restored_from)
        restored_path = local_path(restored_from)
        if restore == "auto" and restored_path is not None:
            for old in prune_older_runs(settings.checkpoint_dir, restored_path):
                log.info("removed superseded checkpoints %s", old)
    else:
        log.info("starting without state (startup mode %s)", settings.startup_mode)
    t_env = table_environment(
        flink_config(settings, jars, restore_from=restored_from, remote=remote)
    )
    result = statement_set(t_env, build(kafka, settings)).execute()
    client = result.get_job_client()
    job_id = str(client.get_job_id())
    started = Started(job_id=job_id, restored_from=restored_from, remote=remote)
    log.info("job %s submitted (%s)", job_id, "remote" if remote else "local mini-cluster")
    _write_status(
        status_file, {"job_id": job_id, "state": "SUBMITTED", "restored_from": restored_from}
    )
    if remote:
        return started
    _supervise(client, settings, status_file, started)
    return started


def _supervise(
    client, settings: AggregateSettings, status_file: Path | None, started: Started
) -> None:
    """Poll the local job; on SIGTERM/SIGINT stop it with a savepoint and return."""
    stop_requested: list[int] = []

    def request_stop(signum, _frame) -> None:
        stop_requested.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    last_state = None
    try:
        while True:
            state = str(client.get_job_status().result()).rsplit(".", 1)[-1]
            if state != last_state:
                log.info("job %s is %s", started.job_id, state)
                _write_status(
                    status_file,
                    {
                        "job_id": started.job_id,
                        "state": state,
                        "restored_from": started.restored_from,
                    },
                )
                last_state = state
            if state in TERMINAL_STATES:
                if state == "FAILED":
                    raise AggregateJobError(
                        f"aggregate: job {started.job_id} failed; see the log above"
                    )
                return
            if stop_requested:
                log.info(
                    "stopping job %s with a savepoint in %s", started.job_id, settings.savepoint_dir
                )
                path = _stop_with_savepoint(client, to_uri(settings.savepoint_dir))
                log.info("savepoint written: %s (restart with --restore %s)", path, path)
                _write_status(
                    status_file,
                    {
                        "job_id": started.job_id,
                        "state": "STOPPED",
                        "savepoint": path,
                        "restored_from": started.restored_from,
                    },
                )
                return
            time.sleep(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_with_savepoint(client, directory: str) -> str:
    # PyFlink 2.2's JobClient.stop_with_savepoint still calls the two-argument Java
    # method that Flink 2 removed; call the three-argument one directly.
    from pyflink.java_gateway import get_gateway

    format_type = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
    return str(client._j_job_client.stopWithSavepoint(False, directory, format_type).get())


def _write_status(path: Path | None, status: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**status, "at": time.time()}, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
