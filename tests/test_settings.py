"""A bad setting is refused with its name, where it came from, and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from pipeline.settings import KafkaSettings, RetrainSettings, settings_error_message


def _finsentry(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_cli_names_the_bad_variable_and_exits_2_without_a_traceback():
    result = _finsentry("retrain", FINSENTRY_RETRAIN_SEED="-5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "invalid retrain settings" in result.stderr
    assert "seed = '-5' (FINSENTRY_RETRAIN_SEED, or retrain.seed in FINSENTRY_CONFIG)" in result.stderr
    assert "greater than or equal to 0" in result.stderr


def test_a_bad_secret_is_named_but_its_value_is_not_repeated():
    with pytest.raises(ValidationError) as caught:
        KafkaSettings(sasl_password=80413377, security_protocol="TELNET")
    message = settings_error_message(caught.value)
    assert "sasl_password (FINSENTRY_KAFKA_SASL_PASSWORD" in message
    assert "80413377" not in message
    assert "security_protocol = 'TELNET'" in message  # other fields keep their value


def test_a_secret_in_the_config_file_is_refused(tmp_path):
    config = tmp_path / "finsentry.yaml"
    config.write_text("kafka:\n  sasl_password: not-here\n", encoding="utf-8")
    result = _finsentry("topics", FINSENTRY_CONFIG=str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "kafka.sasl_password in FINSENTRY_CONFIG is a secret" in result.stderr
    assert "FINSENTRY_KAFKA_SASL_PASSWORD" in result.stderr
    assert "not-here" not in result.stderr


def test_the_config_file_sets_plain_settings(tmp_path, monkeypatch):
    config = tmp_path / "finsentry.yaml"
    config.write_text("retrain:\n  seed: 21\n  epochs: 2\n", encoding="utf-8")
    monkeypatch.setenv("FINSENTRY_CONFIG", str(config))
    monkeypatch.setenv("FINSENTRY_RETRAIN_EPOCHS", "5")  # the environment wins over the file
    settings = RetrainSettings()
    assert (settings.seed, settings.epochs) == (21, 5)


def test_errors_from_other_models_are_left_to_their_caller():
    with pytest.raises(ValidationError) as caught:
        RetrainSettings.model_validate({"seed": "x"})
    assert settings_error_message(caught.value) is not None
    from pipeline.messages import RawArticle

    with pytest.raises(ValidationError) as caught:
        RawArticle.model_validate({})
    assert settings_error_message(caught.value) is None
