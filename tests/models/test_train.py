"""End-to-end training on the tiny encoder and a small synthetic data set (seconds)."""

import csv
import json

import pytest

from models.config import AdapterConfig, ConfigError, TrainConfig
from models.data import SOURCE_FILES
from models.registry import Registry
from models.testing import tiny_base_dir, tiny_settings
from models.train import train


def _data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    words = ["rates", "oil", "earnings", "merger"]
    moods = ["plunge", "steady", "soar"]
    for task, rows in (
        ("topic", [(f"{words[i % 4]} story {i} https://t.co/{i}", i % 4) for i in range(160)]),
        ("sentiment", [(f"shares {moods[i % 3]} today {i}", [0, 2, 1][i % 3]) for i in range(120)]),
    ):
        with (data / SOURCE_FILES[task]).open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    return data


def tiny_config(tiny_root, tmp_path, **overrides) -> TrainConfig:
    """One quick epoch on the tiny encoder and ``_data(tmp_path)`` (written if missing)."""
    if not (tmp_path / "data").is_dir():
        _data(tmp_path)
    values = dict(
        base_model_dir=str(tiny_base_dir(tiny_root)),
        data_dir=str(tmp_path / "data"),
        max_length_tokens=16,
        adapter=AdapterConfig(rank=4, alpha=8, target_modules=["query", "value"]),
        epochs=1,
        batch_size=16,
        torch_threads=1,
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_train_writes_a_complete_promoted_entry(tiny_root, tmp_path):
    config = tiny_config(
        tiny_root,
        tmp_path,
        epochs=2,
        evals_per_epoch=2,
        class_weighting="inverse_sqrt",
        label_smoothing=0.05,
        lexical_mixture=True,
    )
    entry = train(config, tiny_settings(tiny_root), progress=False)
    registry = Registry(tiny_root, tiny_base_dir(tiny_root))
    assert registry.current_version() == entry.version
    assert set(entry.metrics["heldout"]) == {"topic", "sentiment"}
    assert all(t > 0 for t in entry.temperatures.values())
    assert (entry.report_dir / "confusion_topic.png").is_file()
    report = json.loads((entry.report_dir / "report.json").read_text())
    assert report["heldout"]["sentiment"]["per_class"]["negative"]["support"] > 0
    assert entry.config["adapter"]["rank"] == 4
    assert entry.manifest["data"]["snapshot_hash"].startswith("sha256:")
    assert not list((tmp_path / "ckpt").glob("*.pt"))  # removed after success
    assert (tmp_path / "data" / "heldout_topic.csv").is_file()
    # The TF-IDF mixture is fitted, stored, described and scored against the encoder alone.
    assert set(entry.lexical["tasks"]) == {"topic", "sentiment"}
    assert (entry.lexical_dir / "topic.safetensors").is_file()
    assert set(entry.metrics["heldout_encoder_alone"]) == {"topic", "sentiment"}
    assert 0.0 <= entry.metrics["lexical"]["tasks"]["topic"]["model_weight"] <= 1.0
    assert report["lexical"]["tasks"]["sentiment"]["validation_macro_f1_by_weight"]


def test_interrupted_run_resumes_from_its_checkpoint(tiny_root, tmp_path, monkeypatch, caplog):
    import models.train as train_module

    config = tiny_config(tiny_root, tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        train(config, tiny_settings(tiny_root), progress=False)
    assert len(list((tmp_path / "ckpt").glob("*.pt"))) == 1
    monkeypatch.undo()
    caplog.set_level("INFO", logger="models.train")
    entry = train(config, tiny_settings(tiny_root), progress=False)
    assert "resumed from" in caplog.text
    assert entry.metrics["validation_macro_f1"] >= 0
    assert not list((tmp_path / "ckpt").glob("*.pt"))


def test_training_on_the_cached_frozen_prefix(tiny_root, tmp_path, caplog):
    config = tiny_config(
        tiny_root,
        tmp_path,
        adapter=AdapterConfig(
            rank=4, alpha=8, target_modules=["query", "value"],
            options={"layers_to_transform": [1]},
        ),
        cache_frozen_prefix=True,
    )
    caplog.set_level("INFO", logger="models.prefix_cache")
    entry = train(config, tiny_settings(tiny_root), progress=False)
    assert "cached the embeddings and 1 frozen layer(s)" in caplog.text
    assert entry.config["cache_frozen_prefix"] is True
    assert set(entry.metrics["heldout"]) == {"topic", "sentiment"}


def test_training_seed_repeats_a_recipe_on_the_same_split(tiny_root, tmp_path):
    data = tmp_path / "data"
    first = train(tiny_config(tiny_root, tmp_path), tiny_settings(tiny_root), progress=False)
    heldout = {path.name: path.read_bytes() for path in data.glob("heldout_*.csv")}
    same = train(tiny_config(tiny_root, tmp_path), tiny_settings(tiny_root), progress=False)
    assert same.heads_path.read_bytes() == first.heads_path.read_bytes()  # so a change is the seed's
    again = train(
        tiny_config(tiny_root, tmp_path, training_seed=7), tiny_settings(tiny_root), progress=False
    )
    assert {path.name: path.read_bytes() for path in data.glob("heldout_*.csv")} == heldout
    assert again.manifest["data"]["snapshot_hash"] == first.manifest["data"]["snapshot_hash"]
    assert (first.config["seed"], first.config["training_seed"]) == (13, None)
    assert again.config["training_seed"] == 7
    assert again.heads_path.read_bytes() != first.heads_path.read_bytes()


def test_training_seed_defaults_to_the_split_seed():
    assert TrainConfig(seed=5).run_seed == 5
    assert TrainConfig(seed=5, training_seed=9).run_seed == 9
    for name, value in (("seed", -1), ("training_seed", 2**32)):
        with pytest.raises(ConfigError, match=f"{name}={value} must be in 0..4294967295"):
            TrainConfig(**{name: value})
