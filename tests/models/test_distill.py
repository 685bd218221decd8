"""Distillation: soft-label files, the loss, and teacher -> soft labels -> student on the tiny encoder."""

import hashlib
import logging

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from models import cli
from models.config import ConfigError, DistillationConfig, TrainConfig
from models.distill import (
    DistillationError,
    distillation_loss,
    read_soft_labels,
    teacher_soft_labels,
    write_soft_labels,
)
from models.registry import Registry
from models.testing import tiny_base_dir, tiny_settings
from models.train import train
from tests.models.test_train import tiny_config


def _probs(n: int, classes: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(n, classes))
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_soft_labels_round_trip_and_follow_the_texts_not_the_file_order(tmp_path):
    texts = ["fed holds rates", "oil slides", "earnings beat"]
    topic, sentiment = _probs(3, 20, 0), _probs(3, 3, 1)
    path = tmp_path / "soft.npz"
    write_soft_labels(path, texts, topic, sentiment, {"teacher_version": "t1"})
    soft = read_soft_labels(path)
    assert soft.meta == {"teacher_version": "t1"}
    got_topic, got_sentiment = soft.aligned(["earnings beat", "fed holds rates"])
    np.testing.assert_allclose(got_topic, topic[[2, 0]], atol=1e-3)
    np.testing.assert_allclose(got_sentiment, sentiment[[2, 0]], atol=1e-3)


def test_stale_damaged_or_malformed_soft_labels_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "soft.npz"
    write_soft_labels(path, ["a", "b"], _probs(2, 20, 0), _probs(2, 3, 1), {"teacher_version": "t"})
    with pytest.raises(DistillationError, match="1 of 2 training texts are not in the file"):
        read_soft_labels(path).aligned(["a", "c"])
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not a zip archive")
    with pytest.raises(DistillationError, match="damaged.npz: cannot read"):
        read_soft_labels(damaged)
    with pytest.raises(DistillationError, match=r"topic has shape \(2, 19\)"):
        write_soft_labels(path, ["a", "b"], _probs(2, 19, 0), _probs(2, 3, 1), {})
    with pytest.raises(DistillationError, match="not probability distributions"):
        write_soft_labels(path, ["a", "b"], _probs(2, 20, 0) * 2, _probs(2, 3, 1), {})


def test_distillation_loss_is_zero_when_the_student_matches_the_teacher():
    topic, sentiment = torch.tensor(_probs(4, 20, 2)), torch.tensor(_probs(4, 3, 3))
    matching = {"topic_logits": torch.log(topic), "sentiment_logits": torch.log(sentiment) + 5.0}
    assert float(distillation_loss(matching, topic, sentiment, temperature=2.0)) == pytest.approx(
        0.0, abs=1e-5
    )
    other = {"topic_logits": torch.zeros(4, 20), "sentiment_logits": torch.zeros(4, 3)}
    assert float(distillation_loss(other, topic, sentiment, temperature=2.0)) > 0.1


def test_distillation_config_is_validated():
    config = TrainConfig(distillation={"labels": "soft.npz", "weight": 0.7})
    assert config.distillation == DistillationConfig(labels="soft.npz", weight=0.7)
    assert config.distillation.labels_path.is_absolute()
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="distillation.weight"):
        TrainConfig(distillation={"labels": "soft.npz", "weight": 0})
    with pytest.raises(ConfigError, match="distillation"):
        TrainConfig(distillation={"labels": "soft.npz", "alpha": 0.5})


def test_teacher_labels_then_a_distilled_student(tiny_root, tmp_path, monkeypatch, caplog):
    """A teacher trained into its own registry scores its training split (the CLI writes
    the file); a student learns from it; a student on another split is refused."""
    teacher_root = tmp_path / "teacher-registry"
    teacher = train(
        tiny_config(tiny_root, tmp_path),
        tiny_settings(tiny_root, registry_dir=teacher_root),
        promote=False,
        progress=False,
    )
    texts, topic, sentiment, meta = teacher_soft_labels(teacher_root)
    assert meta["teacher_version"] == teacher.version and len(texts) == topic.shape[0]
    np.testing.assert_allclose(topic.sum(axis=1), 1.0, atol=1e-4)

    soft = tmp_path / "soft.npz"
    application = typer.Typer()
    application.callback()(lambda: None)
    cli.register(application)
    result = CliRunner().invoke(
        application,
        ["models", "teacher-labels", "--registry", str(teacher_root), "--out", str(soft)],
    )
    assert result.exit_code == 0, result.output
    assert f"{len(texts)} texts scored by {teacher.version}" in result.output

    distill = {"labels": str(soft), "weight": 0.5, "temperature": 2.0}
    with caplog.at_level(logging.INFO, logger="models.train"):
        student = train(
            tiny_config(tiny_root, tmp_path, distillation=distill, cpu_bf16_autocast=True),
            tiny_settings(tiny_root),
            progress=False,
        )
    assert "distilling from" in caplog.text
    assert Registry(tiny_root, tiny_base_dir(tiny_root)).current_version() == student.version
    assert student.config["distillation"]["labels"] == str(soft)
    provenance = student.manifest["data"]["teacher"]
    assert provenance["teacher_version"] == teacher.version
    assert provenance["soft_labels_sha256"] == hashlib.sha256(soft.read_bytes()).hexdigest()

    with pytest.raises(DistillationError, match="not in the file"):
        train(
            tiny_config(tiny_root, tmp_path, distillation=distill, seed=99),
            tiny_settings(tiny_root),
            progress=False,
        )
