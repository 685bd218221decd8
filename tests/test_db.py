"""Stores opened by several processes at once (the demo starts the sink and the notifier together)."""

from __future__ import annotations

import multiprocessing

from pipeline.articles.store import ArticleStore


def _open_store(url: str, start: multiprocessing.Barrier) -> None:
    start.wait()
    ArticleStore(url).close()


def test_processes_opening_one_new_sqlite_store_at_once_all_succeed(tmp_path):
    url = f"sqlite:///{tmp_path / 'articles.db'}"
    context = multiprocessing.get_context("fork")
    for _round in range(3):
        (tmp_path / "articles.db").unlink(missing_ok=True)
        start = context.Barrier(6)
        workers = [context.Process(target=_open_store, args=(url, start)) for _ in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0] * 6
    store = ArticleStore(url)
    assert store.count() == 0
    store.close()
