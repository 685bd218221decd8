"""Kafka clients against a SASL_PLAINTEXT listener on a real broker.

The shared local broker is never restarted: this module starts a second KRaft
broker from the same stack code, in its own run directory and on its own ports
(which also proves the stack works off its default ports), and stops it at the end.
"""

from __future__ import annotations

import logging
import stat
import time

import pytest

from pipeline.kafka_io import KafkaAuthenticationError, ensure_topics, make_consumer, make_producer
from pipeline.settings import KafkaSettings, StackSettings
from pipeline.stack.kafka import KafkaServer
from tests.fixtures.brokers import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    kafka_port, controller_port, sasl_port = free_ports(3)
    settings = StackSettings(
        run_dir=tmp_path_factory.mktemp("sasl-run"),
        kafka_port=kafka_port,
        kafka_controller_port=controller_port,
        kafka_sasl_port=sasl_port,
        kafka_heap="-Xms128m -Xmx384m",
    )
    broker = KafkaServer(settings)
    broker.start()
    try:
        broker.process.wait_ready(broker.is_ready, settings.start_timeout_seconds)
        broker.configure_users()
        yield broker
    finally:
        broker.process.stop()


def _round_trip(settings: KafkaSettings, topic: str, group_id: str, n: int = 50) -> list[bytes]:
    ensure_topics(settings, [topic], partitions=1)
    producer = make_producer(settings)
    for i in range(n):
        producer.send(topic, key=str(i).encode(), value=f"record {i}".encode())
    producer.flush(timeout=30)
    producer.close()
    consumer = make_consumer(settings, group_id, topic)
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            values.extend(r.value for r in records)
    consumer.commit()
    consumer.close()
    return values


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_clients_produce_and_consume_over_sasl_without_logging_the_password(
    sasl_broker, mechanism, unique, caplog
):
    password = sasl_broker.sasl_password().get_secret_value()
    settings = KafkaSettings(
        bootstrap_servers=sasl_broker.settings.kafka_sasl_bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username=sasl_broker.settings.kafka_sasl_username,
        sasl_password=password,
    )
    caplog.set_level(logging.DEBUG)  # kafka-python logs PLAIN auth bytes at DEBUG
    # CLI tests run `finsentry`'s callback in-process, which quiets the "kafka" logger.
    caplog.set_level(logging.DEBUG, logger="kafka")

    values = _round_trip(settings, f"test.{unique}.sasl", f"test-group-{unique}")

    assert sorted(values) == sorted(f"record {i}".encode() for i in range(50))
    assert "SaslAuthenticate" in caplog.text or mechanism != "PLAIN"  # the guard was exercised
    assert password not in caplog.text
    assert all(password not in record.getMessage() for record in caplog.records)
    assert password not in repr(settings) and password not in settings.model_dump_json()


@pytest.mark.parametrize("client", ["producer", "consumer"])
def test_a_wrong_password_is_refused_with_a_clear_error(sasl_broker, client):
    settings = sasl_broker.sasl_client_settings(
        sasl_mechanism="PLAIN" if client == "producer" else "SCRAM-SHA-256",
        sasl_password="not-the-password",
    )
    with pytest.raises(KafkaAuthenticationError) as refused:
        if client == "producer":
            make_producer(settings, bootstrap_timeout_ms=6_000)
        else:
            make_consumer(settings, None, bootstrap_timeout_ms=6_000)
    message = str(refused.value)
    assert "SASL authentication failed" in message
    assert settings.sasl_mechanism in message and repr(settings.sasl_username) in message
    assert sasl_broker.settings.kafka_sasl_bootstrap in message
    assert "not-the-password" not in message


def test_the_plaintext_listener_keeps_serving_loopback_clients(sasl_broker, unique):
    settings = KafkaSettings(bootstrap_servers=sasl_broker.settings.kafka_bootstrap)
    values = _round_trip(settings, f"test.{unique}.plain", f"test-group-{unique}", n=5)
    assert len(values) == 5


def test_the_password_stays_out_of_config_and_broker_log(sasl_broker):
    password = sasl_broker.sasl_password().get_secret_value()
    config = sasl_broker.config_file.read_text()
    assert "SASL_PLAINTEXT://" in config and "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256" in config
    assert password not in config
    assert password not in sasl_broker.process.log_file.read_text(errors="replace")
    for private in (sasl_broker.sasl_secrets_file, sasl_broker.sasl_dir / "password"):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private


def test_a_mechanism_the_listener_does_not_offer_is_named_in_the_error(sasl_broker):
    settings = sasl_broker.sasl_client_settings(sasl_mechanism="SCRAM-SHA-512")
    with pytest.raises(KafkaAuthenticationError, match="SCRAM-SHA-512 is not enabled"):
        make_producer(settings, bootstrap_timeout_ms=6_000)
