"""Ingest: everything that puts ``news.raw`` records on Kafka.

- :mod:`.crawler` polls RSS/Atom feeds politely and safely (``finsentry crawl``);
- :mod:`.replay` replays CSV/JSONL files at a rate or a speed-up (``finsentry replay``);
- :mod:`.demo` composes the labelled demo stream with a known spike
  (``finsentry demo-stream``).

Both producers build :class:`pipeline.messages.RawArticle` and hand it to an
:class:`~pipeline.ingest.sink.ArticleSink`; nothing here serialises by hand.
"""
