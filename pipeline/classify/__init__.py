"""The classifier service: ``news.raw`` -> micro-batches -> engine -> ``news.scored``/``news.dlq``.

Importing this package does not import torch: the engine (``models.inference``)
is loaded by :mod:`pipeline.classify.reload` when the service starts.
"""
