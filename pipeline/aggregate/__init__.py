"""Windowed sentiment aggregation on Apache Flink (Table API / SQL, runs in the JVM).

``news.scored`` -> de-duplicate -> event-time windows per all/topic/ticker ->
``sentiment.windows`` (exactly once). Start it with ``finsentry aggregate`` or
:func:`pipeline.aggregate.job.run_job`; the SQL is built in
:mod:`pipeline.aggregate.sql`. Importing this package does not import pyflink.
"""
