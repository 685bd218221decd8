"""Rendering the broker config: SASL listener on or off, and where its password comes from."""

from __future__ import annotations

import stat

import pytest

from pipeline.settings import StackSettings
from pipeline.stack.kafka import KafkaServer
from pipeline.stack.process import StackError


def test_no_sasl_port_renders_the_plaintext_broker_only(tmp_path):
    config = KafkaServer(StackSettings(run_dir=tmp_path)).render_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9097\n" in config
    assert "SASL_PLAINTEXT://" not in config and "sasl.enabled.mechanisms" not in config
    assert not (tmp_path / "kafka" / "sasl").exists()


def test_sasl_port_adds_a_listener_whose_password_is_generated_once(tmp_path):
    settings = StackSettings(run_dir=tmp_path, kafka_port=19092, kafka_sasl_port=19094)
    broker = KafkaServer(settings)
    config = broker.render_config().read_text()
    password = broker.sasl_password().get_secret_value()

    assert ",SASL_PLAINTEXT://127.0.0.1:19094" in config
    assert f"${{file:{broker.sasl_secrets_file}:password}}" in config
    assert password not in config
    assert broker.sasl_secrets_file.read_text() == f"password={password}\n"
    assert stat.S_IMODE(broker.sasl_secrets_file.stat().st_mode) == 0o600
    assert len(password) >= 24
    # A restart keeps the password that clients were given.
    assert KafkaServer(settings).sasl_password().get_secret_value() == password


def test_the_password_comes_from_the_environment_when_set(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSENTRY_STACK_KAFKA_SASL_PASSWORD", "from-the-environment-1")
    broker = KafkaServer(StackSettings(run_dir=tmp_path, kafka_sasl_port=19094))
    broker.render_config()
    assert broker.sasl_password().get_secret_value() == "from-the-environment-1"
    assert not (broker.sasl_dir / "password").exists()
    client = broker.sasl_client_settings(sasl_mechanism="PLAIN")
    assert client.client_config()["sasl_plain_password"] == "from-the-environment-1"
    assert client.bootstrap_servers == "127.0.0.1:19094"


def test_the_password_comes_from_the_secrets_directory(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "finsentry_stack_kafka_sasl_password").write_text("from-a-secrets-file-2")
    monkeypatch.setenv("FINSENTRY_SECRETS_DIR", str(secrets))
    # secrets_dir is read when a settings class is defined: rebuild the config.
    from pipeline.settings import StackSettings as Base

    class Reloaded(Base):
        section = "stack"

    broker = KafkaServer(Reloaded(run_dir=tmp_path, kafka_sasl_port=19094))
    assert broker.sasl_password().get_secret_value() == "from-a-secrets-file-2"


@pytest.mark.parametrize("bad", ['has"quote-inside', "has space inside", "short"])
def test_a_password_that_would_break_the_jaas_line_is_refused(tmp_path, bad):
    broker = KafkaServer(StackSettings(run_dir=tmp_path, kafka_sasl_port=19094,
                                       kafka_sasl_password=bad))
    with pytest.raises(StackError, match="SASL password"):
        broker.render_config()


def test_a_cluster_id_never_looks_like_an_option_to_kafka_storage():
    """kafka-storage reads `-t -x...` as a missing value: one random id in 64 started with `-`."""
    from pipeline.stack.kafka import _kafka_cluster_id

    ids = [_kafka_cluster_id() for _ in range(5000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
