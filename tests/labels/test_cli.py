"""``finsentry labels import|export|stats`` through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pipeline.cli import app


def test_import_reports_bad_rows_and_keeps_good_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("FINSENTRY_LABELS_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    path = tmp_path / "labels.csv"
    path.write_text("id,text,sentiment\na,Stocks fall,negative\nb,,positive\nc,Gold up,bullish\n")
    runner = CliRunner()
    result = runner.invoke(app, ["labels", "import", str(path), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout.strip())
    assert report["labels_added"] == 2
    assert report["rejected_rows"] == [
        {"line": 3, "reason": "no text (need 'text', or 'title'/'body')"}
    ]
    again = runner.invoke(app, ["labels", "import", str(path), "--json"])
    assert json.loads(again.stdout.strip())["labels_already_stored"] == 2
    stats = runner.invoke(app, ["labels", "stats", "--json"])
    assert json.loads(stats.stdout)["labels"] == {"csv/sentiment": 2}
    out = tmp_path / "resolved.jsonl"
    assert (
        runner.invoke(app, ["labels", "export", "--format", "jsonl", "-o", str(out)]).exit_code == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["article_id"], r["label"]) for r in rows] == [("a", "negative"), ("c", "positive")]


def test_review_and_label_studio_export_with_a_tiny_model(tmp_path, monkeypatch):
    from models.testing import make_tiny_entry, tiny_base_dir

    entry = make_tiny_entry(tmp_path / "registry")
    monkeypatch.setenv("FINSENTRY_MODEL_REGISTRY_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv("FINSENTRY_MODEL_BASE_MODEL_DIR", str(tiny_base_dir(tmp_path / "registry")))
    monkeypatch.setenv("FINSENTRY_MODEL_DEVICE", "cpu")
    monkeypatch.setenv("FINSENTRY_MODEL_TORCH_THREADS", "1")  # two shared cores
    monkeypatch.setenv("FINSENTRY_LABELS_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    articles = tmp_path / "articles.jsonl"
    articles.write_text(
        "".join(
            json.dumps({"id": f"a{i}", "title": f"Headline {i}", "body": "Body."}) + "\n"
            for i in range(4)
        )
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["labels", "review", "--input", str(articles), "--limit", "3", "--labeller", "ann"],
        input="n\rq",
    )
    assert result.exit_code == 0, result.output
    assert "2 labels stored" in result.output
    stats = json.loads(runner.invoke(app, ["labels", "stats", "--json"]).stdout)
    assert stats["labels"] == {"review/sentiment": 2}

    tasks_file, config_file = tmp_path / "tasks.json", tmp_path / "config.xml"
    result = runner.invoke(
        app,
        [
            "labels",
            "export",
            "--input",
            str(articles),
            "-o",
            str(tasks_file),
            "--config-out",
            str(config_file),
        ],
    )
    assert result.exit_code == 0, result.output
    tasks = json.loads(tasks_file.read_text())
    assert len(tasks) == 4  # no article has both tasks labelled yet
    assert {t["predictions"][0]["model_version"] for t in tasks} == {entry.version}
    assert '<Choices name="topic"' in config_file.read_text()
