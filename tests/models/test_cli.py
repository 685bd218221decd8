"""The model CLI against a tiny registry (evaluate's CSV handling, models list/promote/rollback)."""

import csv
import json

import pytest
import typer
from typer.testing import CliRunner

from models import cli
from models.testing import make_tiny_entry, tiny_base_dir


@pytest.fixture
def app(tiny_root, monkeypatch):
    monkeypatch.setenv("FINSENTRY_MODEL_REGISTRY_DIR", str(tiny_root))
    monkeypatch.setenv("FINSENTRY_MODEL_BASE_MODEL_DIR", str(tiny_base_dir(tiny_root)))
    monkeypatch.setenv("FINSENTRY_MODEL_DEVICE", "cpu")
    application = typer.Typer()
    application.callback()(lambda: None)
    cli.register(application)
    return application


def _csv(path, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def test_evaluate_json_with_int_and_string_sentiment_labels(app, tiny_root, tmp_path):
    entry = make_tiny_entry(tiny_root)
    data = _csv(
        tmp_path / "s.csv",
        [
            ("Stocks tumble", 0),
            ("Shares jump", "positive"),
            ("Fed meets", 2),
            ("Oil flat", "neutral"),
        ],
    )
    result = CliRunner().invoke(
        app, ["evaluate", "--task", "sentiment", "--data", str(data), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n"] == 4 and 0 <= report["accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1
    assert report["model_version"] == entry.version


def test_evaluate_unknown_label_names_the_row(app, tiny_root, tmp_path):
    make_tiny_entry(tiny_root)
    data = _csv(tmp_path / "bad.csv", [("ok", 1), ("ok too", 3), ("bad", 25)])
    result = CliRunner().invoke(app, ["evaluate", "--task", "topic", "--data", str(data), "--json"])
    assert result.exit_code == 2
    assert "row 3" in result.output and "'25'" in result.output


def test_evaluate_unknown_task(app, tmp_path):
    data = _csv(tmp_path / "x.csv", [("a", 1)])
    result = CliRunner().invoke(
        app, ["evaluate", "--task", "ticker", "--data", str(data), "--json"]
    )
    assert result.exit_code == 2 and "expected topic or sentiment" in result.output


def test_models_list_promote_rollback(app, tiny_root):
    first = make_tiny_entry(tiny_root, seed=0)
    second = make_tiny_entry(tiny_root, seed=1)
    runner = CliRunner()
    listing = runner.invoke(app, ["models", "list"])
    assert f"* {second.version}" in listing.stdout and first.version in listing.stdout
    assert runner.invoke(app, ["models", "rollback"]).stdout.strip() == f"current: {first.version}"
    assert runner.invoke(app, ["models", "promote", second.version]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["models", "show"]).stdout)
    assert shown["version"] == second.version and shown["current"] is True
    refused = runner.invoke(app, ["models", "promote", "nope"])
    assert refused.exit_code == 1 and "no such entry" in refused.output


def test_predict(app, tiny_root):
    entry = make_tiny_entry(tiny_root)
    result = CliRunner().invoke(app, ["predict", "Tesla shares fall", "ECB raises rates", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [x["text"] for x in lines] == ["Tesla shares fall", "ECB raises rates"]
    assert all(x["model_version"] == entry.version for x in lines)
    assert {"topic", "sentiment", "sentiment_score", "confidence", "topic_score"} <= set(lines[0])
