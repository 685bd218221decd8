"""The job's SQL, Flink configuration, settings and checkpoint discovery, without Flink."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from pydantic import ValidationError

from pipeline.aggregate.checkpoints import (
    latest_checkpoint,
    local_path,
    prune_older_runs,
    retained_checkpoints,
    to_uri,
)
from pipeline.aggregate.job import AggregateJobError, flink_config, resolve_restore
from pipeline.aggregate.sql import build, interval, kafka_properties
from pipeline.aggregate.testing import T0, expected_windows, scored, settings_env
from pipeline.settings import AggregateSettings, KafkaSettings


@pytest.mark.parametrize(
    ("ms", "literal"),
    [
        (0, "INTERVAL '0 00:00:00.000' DAY TO SECOND(3)"),
        (5_250, "INTERVAL '0 00:00:05.250' DAY TO SECOND(3)"),
        (15 * 60_000, "INTERVAL '0 00:15:00.000' DAY TO SECOND(3)"),
        (26 * 3600_000 + 1, "INTERVAL '1 02:00:00.001' DAY TO SECOND(3)"),
    ],
)
def test_interval_literals(ms, literal):
    assert interval(ms) == literal


def test_interval_refuses_negative():
    with pytest.raises(ValueError, match="-1 ms"):
        interval(-1)


def test_settings_refuse_a_hop_that_is_not_a_multiple_of_its_slide():
    with pytest.raises(ValidationError, match="multiple of hopping_slide_ms"):
        AggregateSettings(hopping_window_ms=90_000, hopping_slide_ms=60_000)
    assert AggregateSettings(hopping_window_ms=0).hopping_window_ms == 0


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FINSENTRY_AGGREGATE_TUMBLING_WINDOW_MS", "30000")
    monkeypatch.setenv("FINSENTRY_AGGREGATE_DEDUPE_BY_DUPLICATE_OF", "false")
    settings = AggregateSettings()
    assert settings.tumbling_window_ms == 30_000
    assert settings.dedupe_by_duplicate_of is False


def test_settings_env_reproduces_settings(monkeypatch):
    original = AggregateSettings(parallelism=2, dedupe_by_id=False, jobmanager_address="jm:8081")
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert AggregateSettings() == original


def test_sql_has_exactly_once_sinks_with_distinct_transactional_prefixes():
    settings = AggregateSettings(transactional_id_prefix="fs-agg")
    script = build(KafkaSettings(), settings).script()
    assert script.count("'sink.delivery-guarantee' = 'exactly-once'") == 3
    for sink in ("windows", "late", "dlq"):
        assert f"'sink.transactional-id-prefix' = 'fs-agg-{sink}'" in script
    assert "'properties.isolation.level' = 'read_committed'" in script


def test_sql_follows_the_settings():
    kafka = KafkaSettings(topic_scored="in", topic_windows="out")
    settings = AggregateSettings(
        tumbling_window_ms=30_000, hopping_window_ms=0, out_of_orderness_ms=2_000
    )
    script = build(kafka, settings).script()
    assert "published_at - INTERVAL '0 00:00:02.000' DAY TO SECOND(3)" in script
    assert "TUMBLE(TABLE keyed, DESCRIPTOR(published_at), INTERVAL '0 00:00:30.000'" in script
    assert "HOP(" not in script
    assert "'topic' = 'in'" in script and "'topic' = 'out'" in script
    assert "COALESCE(duplicate_of, id) AS story_id" in script
    only_id = build(kafka, AggregateSettings(dedupe_by_duplicate_of=False)).script()
    assert "id AS story_id" in only_id and "COALESCE(duplicate_of" not in only_id
    no_dedupe = build(kafka, AggregateSettings(dedupe_by_id=False, dedupe_by_duplicate_of=False))
    assert "ROW_NUMBER" not in no_dedupe.script()


def test_kafka_security_settings_reach_the_connector():
    kafka = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="agg",
        sasl_password='s3cr"et',
    )
    props = kafka_properties(kafka)
    assert props["properties.security.protocol"] == "SASL_SSL"
    assert props["properties.sasl.mechanism"] == "SCRAM-SHA-512"
    assert (
        'ScramLoginModule required username="agg" password="s3cr\\"et";'
        in (props["properties.sasl.jaas.config"])
    )
    with pytest.raises(ValueError, match="SASL"):
        kafka_properties(KafkaSettings(security_protocol="SASL_PLAINTEXT"))


def test_flink_config_local_and_remote(tmp_path):
    settings = AggregateSettings(
        checkpoint_dir=str(tmp_path / "chk"), checkpoint_interval_ms=2_000, parallelism=3
    )
    jar = tmp_path / "connector.jar"
    local = flink_config(settings, [jar], restore_from="file:///x/chk-7")
    assert local["execution.checkpointing.interval"] == "2000 ms"
    assert local["execution.checkpointing.dir"] == (tmp_path / "chk").as_uri()
    assert local["execution.checkpointing.externalized-checkpoint-retention"] == (
        "RETAIN_ON_CANCELLATION"
    )
    assert local["execution.state-recovery.path"] == "file:///x/chk-7"
    assert local["pipeline.jars"] == jar.as_uri()
    assert local["parallelism.default"] == "3"
    assert local["table.exec.uid.generation"] == "ALWAYS"
    assert "execution.target" not in local
    remote = flink_config(
        settings.model_copy(update={"jobmanager_address": "jm:8081"}), [jar], remote=True
    )
    assert (remote["execution.target"], remote["rest.address"], remote["rest.port"]) == (
        "remote",
        "jm",
        "8081",
    )
    assert remote["execution.checkpointing.dir"] == (tmp_path / "chk").as_uri()  # set explicitly
    cluster_dirs = flink_config(AggregateSettings(jobmanager_address="jm:8081"), [jar], remote=True)
    assert "execution.checkpointing.dir" not in cluster_dirs
    assert "execution.checkpointing.savepoint-dir" not in cluster_dirs
    with pytest.raises(AggregateJobError, match="JOBMANAGER_ADDRESS"):
        flink_config(settings, [jar], remote=True)


def _checkpoint(root, job, n, mtime):
    path = root / job / f"chk-{n}"
    path.mkdir(parents=True)
    (path / "_metadata").write_bytes(b"x")
    os.utime(path / "_metadata", (mtime, mtime))
    return path


def test_latest_checkpoint_spans_job_ids_and_skips_incomplete(tmp_path):
    assert latest_checkpoint(str(tmp_path / "missing")) is None
    old = _checkpoint(tmp_path, "job-a", 9, 1_000)
    new = _checkpoint(tmp_path, "job-b", 2, 2_000)
    (tmp_path / "job-b" / "chk-3").mkdir()  # in progress: no _metadata yet
    assert retained_checkpoints(str(tmp_path)) == [old, new]
    assert latest_checkpoint(to_uri(str(tmp_path))) == new
    assert latest_checkpoint("s3://bucket/checkpoints") is None


def test_uris_and_local_paths(tmp_path):
    assert to_uri(str(tmp_path)) == tmp_path.as_uri()
    assert to_uri(f"file:{tmp_path}") == tmp_path.as_uri()  # how Flink reports savepoints
    assert to_uri("s3://bucket/chk") == "s3://bucket/chk"
    assert local_path(f"file://{tmp_path}") == tmp_path
    assert local_path("s3://bucket/chk") is None


def test_resolve_restore(tmp_path):
    settings = AggregateSettings(checkpoint_dir=str(tmp_path))
    assert resolve_restore(settings, "auto") is None
    chk = _checkpoint(tmp_path, "job", 4, 1_000)
    assert resolve_restore(settings, "auto") == chk.as_uri()
    assert resolve_restore(settings, "none") is None
    assert resolve_restore(settings, str(chk)) == chk.as_uri()
    assert resolve_restore(settings, f"file:{chk}") == chk.as_uri()
    with pytest.raises(AggregateJobError, match="no checkpoint or savepoint"):
        resolve_restore(settings, str(tmp_path / "nothing"))
    # On a cluster, auto only searches a directory that was set explicitly.
    assert resolve_restore(AggregateSettings(), "auto", remote=True) is None
    assert resolve_restore(settings, "auto", remote=True) == chk.as_uri()


def test_pruning_keeps_the_restored_run_and_newer_ones(tmp_path):
    old = _checkpoint(tmp_path, "a" * 32, 3, 1_000).parent
    os.utime(old, (1_000, 1_000))
    keep = _checkpoint(tmp_path, "b" * 32, 5, 2_000)
    os.utime(keep.parent, (2_000, 2_000))
    newer = _checkpoint(tmp_path, "c" * 32, 1, 3_000).parent
    not_flink = tmp_path / "notes"
    not_flink.mkdir()
    os.utime(not_flink, (500, 500))
    assert prune_older_runs(str(tmp_path), keep) == [old]
    assert keep.exists() and newer.exists() and not_flink.exists() and not old.exists()


def test_reference_windows_for_one_article():
    settings = AggregateSettings(tumbling_window_ms=60_000, hopping_window_ms=120_000)
    article = scored("a", 61, sentiment="negative", score=-0.5, confidence=0.5, tickers=["AAPL"])
    windows = expected_windows([article], settings, until=T0 + timedelta(hours=1))
    spans = sorted({(k.window_start - T0, k.window_end - T0) for k in windows})
    minute = timedelta(minutes=1)
    assert spans == [(0 * minute, 2 * minute), (minute, 2 * minute), (minute, 3 * minute)]
    assert {(k.dimension, k.key) for k in windows} == {
        ("all", "all"),
        ("topic", "earnings"),
        ("ticker", "AAPL"),
    }
    assert all(
        w.negative_ratio == 1.0 and w.weighted_mean_sentiment == -0.5 for w in windows.values()
    )
