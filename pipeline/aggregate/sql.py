"""The aggregation job as Flink SQL: table definitions and the queries that fill them.

Everything here is text; :mod:`pipeline.aggregate.job` hands it to a
TableEnvironment. Nothing runs in Python per record: JSON decoding, the
watermark, de-duplication, windowing and JSON encoding all happen in the JVM.

Data flow (each name is a view or table below, and the stable step id used in
logs and in the Flink job graph's operator names)::

    scored (Kafka news.scored, JSON, watermark on published_at)
      |-- invalid ---------------------------------> dlq      (Kafka news.dlq)
      |-- late: published_at <= CURRENT_WATERMARK --> late     (Kafka sentiment.late)
      `-- on_time -> deduped (first row per story) -> keyed (all | topic | ticker)
                 -> TUMBLE / HOP windows -> windows (Kafka sentiment.windows)

Why late rows are split off before windowing: a Flink SQL window drops rows
whose window has already fired and only counts them in the operator metric
``numLateRecordsDropped``. Routing ``published_at <= CURRENT_WATERMARK(...)``
to a side topic first makes each late row visible, with the watermark it
missed, and the split is exact: a row that passes the filter can never be late
for the window operator downstream, whose watermark is never ahead of the
filter's.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import AggregateSettings, KafkaSettings

#: Stable step ids (snake_case), reused in view names, logs and docs.
STEPS = ("scored", "invalid", "late", "on_time", "deduped", "keyed", "windows")

SENTIMENTS = ("negative", "neutral", "positive")

#: RFC 3339, UTC, milliseconds, ``Z``: the same text messages.format_time writes.
RFC3339_MS = "yyyy-MM-dd''T''HH:mm:ss.SSS''Z''"


def interval(ms: int) -> str:
    """A SQL day-time interval literal of ``ms`` milliseconds."""
    if ms < 0:
        raise ValueError(f"aggregate: interval must not be negative, got {ms} ms")
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days > 99:
        raise ValueError(f"aggregate: interval of {ms} ms is longer than 99 days")
    return (
        f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"
    )


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _with(options: dict[str, str]) -> str:
    body = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    return f"WITH (\n  {body}\n)"


def kafka_properties(kafka: KafkaSettings) -> dict[str, str]:
    """Kafka client settings (bootstrap, SASL, TLS) as ``properties.*`` connector options."""
    props = {"properties.bootstrap.servers": kafka.bootstrap_servers}
    if kafka.security_protocol != "PLAINTEXT":
        props["properties.security.protocol"] = kafka.security_protocol
    if kafka.security_protocol.startswith("SASL"):
        if not (kafka.sasl_mechanism and kafka.sasl_username and kafka.sasl_password):
            raise ValueError(
                f"aggregate: security_protocol {kafka.security_protocol} needs "
                "FINSENTRY_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD"
            )
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if kafka.sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        password = kafka.sasl_password.get_secret_value().replace('"', '\\"')
        props["properties.sasl.mechanism"] = kafka.sasl_mechanism
        props["properties.sasl.jaas.config"] = (
            f'{module} required username="{kafka.sasl_username}" password="{password}";'
        )
    if kafka.security_protocol.endswith("SSL") and kafka.ssl_cafile:
        props["properties.ssl.truststore.type"] = "PEM"
        props["properties.ssl.truststore.location"] = str(kafka.ssl_cafile)
    return props


@dataclass(frozen=True)
class JobSql:
    """The statements of one job: DDL and views first, then the INSERTs of one statement set."""

    ddl: tuple[str, ...]
    inserts: tuple[str, ...]

    def script(self) -> str:
        return ";\n\n".join(self.ddl + self.inserts) + ";\n"


def _sink(
    kafka: KafkaSettings, settings: AggregateSettings, topic: str, name: str
) -> dict[str, str]:
    return {
        "connector": "kafka",
        "topic": topic,
        **kafka_properties(kafka),
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "json",
        "value.fields-include": "EXCEPT_KEY",
        "value.json.timestamp-format.standard": "ISO-8601",
        "value.json.encode.ignore-null-fields": "true",
        "sink.delivery-guarantee": "exactly-once",
        # One prefix per sink: two sinks sharing a prefix would fence each other.
        "sink.transactional-id-prefix": f"{settings.transactional_id_prefix}-{name}",
        "properties.transaction.timeout.ms": str(settings.transaction_timeout_ms),
    }


_ARTICLE_COLUMNS = """\
  id STRING,
  url STRING,
  source STRING,
  title STRING,
  published_at TIMESTAMP_LTZ(3),
  fetched_at TIMESTAMP_LTZ(3),
  lang STRING,
  tickers ARRAY<STRING>,
  duplicate_of STRING,
  topic STRING,
  topic_score DOUBLE,
  sentiment STRING,
  sentiment_score DOUBLE,
  confidence DOUBLE,
  model_version STRING,
  scored_at TIMESTAMP_LTZ(3)"""

_ARTICLE_FIELDS = (
    "id, url, source, title, published_at, fetched_at, lang, tickers, duplicate_of, topic, "
    "topic_score, sentiment, sentiment_score, confidence, model_version, scored_at"
)


def build(kafka: KafkaSettings, settings: AggregateSettings) -> JobSql:
    """All statements of the aggregation job for these settings."""
    source_options = {
        "connector": "kafka",
        "topic": kafka.topic_scored,
        **kafka_properties(kafka),
        "properties.group.id": settings.group_id,
        "properties.auto.offset.reset": "earliest",
        # Offsets are committed to the group on checkpoints, for lag monitoring only:
        # the job itself restores its positions from the checkpoint.
        "properties.commit.offsets.on.checkpoint": "true",
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": settings.startup_mode,
        "value.format": "json",
        "value.json.timestamp-format.standard": "ISO-8601",
        # A record that is not JSON at all cannot become a row; fields that do not
        # parse become NULL and the row goes to the dead-letter topic below.
        "value.json.ignore-parse-errors": "true",
        "value.json.fail-on-missing-field": "false",
    }
    scored = f"""CREATE TEMPORARY TABLE scored (
{_ARTICLE_COLUMNS},
  kafka_topic STRING METADATA FROM 'topic' VIRTUAL,
  kafka_partition INT METADATA FROM 'partition' VIRTUAL,
  kafka_offset BIGINT METADATA FROM 'offset' VIRTUAL,
  WATERMARK FOR published_at AS published_at - {interval(settings.out_of_orderness_ms)}
) {_with(source_options)}"""

    windows_sink = f"""CREATE TEMPORARY TABLE windows (
  record_key STRING,
  `schema` INT,
  window_start STRING,
  window_end STRING,
  dimension STRING,
  `key` STRING,
  articles BIGINT,
  negative BIGINT,
  neutral BIGINT,
  positive BIGINT,
  negative_ratio DOUBLE,
  mean_sentiment DOUBLE,
  weighted_mean_sentiment DOUBLE
) {_with(_sink(kafka, settings, kafka.topic_windows, "windows"))}"""

    late_sink = f"""CREATE TEMPORARY TABLE late (
  record_key STRING,
  `schema` INT,
{_ARTICLE_COLUMNS},
  watermark_at TIMESTAMP_LTZ(3),
  source_topic STRING,
  `partition` INT,
  `offset` BIGINT
) {_with(_sink(kafka, settings, settings.topic_late, "late"))}"""

    dlq_sink = f"""CREATE TEMPORARY TABLE dlq (
  record_key STRING,
  `schema` INT,
  original STRING,
  original_encoding STRING,
  stage STRING,
  reason STRING,
  error STRING,
  `at` TIMESTAMP_LTZ(3),
  source_topic STRING,
  `partition` INT,
  `offset` BIGINT,
  `key` STRING
) {_with(_sink(kafka, settings, kafka.topic_dlq, "dlq"))}"""

    sentiments = ", ".join(_quote(s) for s in SENTIMENTS)
    # IS TRUE: a NULL field makes the conjunction NULL, and a row that is neither
    # valid nor invalid would vanish without a trace.
    valid = (
        f"((id IS NOT NULL AND published_at IS NOT NULL AND topic IS NOT NULL "
        f"AND sentiment IN ({sentiments}) "
        f"AND sentiment_score BETWEEN -1 AND 1 AND confidence BETWEEN 0 AND 1) IS TRUE)"
    )
    invalid_view = f"""CREATE TEMPORARY VIEW invalid AS
SELECT *,
  CASE
    WHEN id IS NULL THEN 'id: missing or not a string'
    WHEN published_at IS NULL THEN 'published_at: missing or not RFC 3339 UTC'
    WHEN topic IS NULL THEN 'topic: missing'
    WHEN sentiment IS NULL OR sentiment NOT IN ({sentiments})
      THEN 'sentiment: not one of {"/".join(SENTIMENTS)}'
    WHEN sentiment_score IS NULL OR sentiment_score NOT BETWEEN -1 AND 1
      THEN 'sentiment_score: missing or outside [-1, 1]'
    ELSE 'confidence: missing or outside [0, 1]'
  END AS error
FROM scored
WHERE NOT {valid}"""

    # CURRENT_WATERMARK is NULL until the first watermark: nothing is late before it.
    late_view = f"""CREATE TEMPORARY VIEW late_rows AS
SELECT *, CURRENT_WATERMARK(published_at) AS watermark_at
FROM scored
WHERE {valid} AND published_at <= CURRENT_WATERMARK(published_at)"""

    on_time_view = f"""CREATE TEMPORARY VIEW on_time AS
SELECT id, {_story_key(settings)} AS story_id, published_at, topic, sentiment,
  sentiment_score, confidence, tickers, PROCTIME() AS arrived_at
FROM scored
WHERE {valid}
  AND (CURRENT_WATERMARK(published_at) IS NULL OR published_at > CURRENT_WATERMARK(published_at))"""

    if settings.dedupe_by_id or settings.dedupe_by_duplicate_of:
        # First row per story in arrival order: insert-only output that keeps
        # published_at as the event-time attribute, and state that expires
        # after dedupe_ttl_ms (table.exec.state.ttl, set by the job).
        deduped_view = """CREATE TEMPORARY VIEW deduped AS
SELECT id, story_id, published_at, topic, sentiment, sentiment_score, confidence, tickers
FROM (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY story_id ORDER BY arrived_at ASC) AS row_num
  FROM on_time
)
WHERE row_num = 1"""
    else:
        deduped_view = """CREATE TEMPORARY VIEW deduped AS
SELECT id, story_id, published_at, topic, sentiment, sentiment_score, confidence, tickers
FROM on_time"""

    # One UNNEST over ['all', topic, ticker...] keeps a single branch after the
    # de-duplication (three UNION ALL branches would each get their own copy of
    # the de-duplication state); the ordinality says which dimension a key is.
    keyed_view = """CREATE TEMPORARY VIEW keyed AS
SELECT
  CASE WHEN k.pos = 1 THEN 'all' WHEN k.pos = 2 THEN 'topic' ELSE 'ticker' END AS dimension,
  k.`key`, published_at, sentiment, sentiment_score, confidence
FROM deduped
CROSS JOIN UNNEST(
  CASE WHEN tickers IS NULL THEN ARRAY['all', topic]
    ELSE ARRAY_CONCAT(ARRAY['all', topic], tickers) END
) WITH ORDINALITY AS k (`key`, pos)
WHERE k.`key` IS NOT NULL AND k.`key` <> ''"""

    window_tables = [
        f"TUMBLE(TABLE keyed, DESCRIPTOR(published_at), {interval(settings.tumbling_window_ms)})"
    ]
    if settings.hopping_window_ms:
        window_tables.append(
            f"HOP(TABLE keyed, DESCRIPTOR(published_at), {interval(settings.hopping_slide_ms)}, "
            f"{interval(settings.hopping_window_ms)})"
        )
    window_queries = "\nUNION ALL\n".join(_window_query(t) for t in window_tables)
    insert_windows = f"""INSERT INTO windows
SELECT
  CONCAT(dimension, ':', `key`) AS record_key,
  1 AS `schema`,
  DATE_FORMAT(window_start, '{RFC3339_MS}') AS window_start,
  DATE_FORMAT(window_end, '{RFC3339_MS}') AS window_end,
  dimension, `key`, articles, negative, neutral, positive,
  CAST(negative AS DOUBLE) / articles AS negative_ratio,
  GREATEST(-1.0, LEAST(1.0, score_sum / articles)) AS mean_sentiment,
  CASE WHEN weight_sum > 0
    THEN GREATEST(-1.0, LEAST(1.0, weighted_sum / weight_sum)) END AS weighted_mean_sentiment
FROM (
{window_queries}
)"""

    insert_late = f"""INSERT INTO late
SELECT id, 1, {_ARTICLE_FIELDS}, watermark_at, kafka_topic, kafka_partition, kafka_offset
FROM late_rows"""

    insert_dlq = """INSERT INTO dlq
SELECT
  COALESCE(id, CONCAT_WS('/', kafka_topic, CAST(kafka_partition AS STRING),
    CAST(kafka_offset AS STRING))),
  1,
  JSON_OBJECT(
    'id' VALUE id, 'published_at' VALUE CAST(published_at AS STRING), 'topic' VALUE topic,
    'sentiment' VALUE sentiment, 'sentiment_score' VALUE sentiment_score,
    'confidence' VALUE confidence
  ),
  'utf-8',
  'aggregate',
  'invalid_field',
  error,
  NOW(),
  kafka_topic, kafka_partition, kafka_offset, id
FROM invalid"""

    return JobSql(
        ddl=(
            scored,
            windows_sink,
            late_sink,
            dlq_sink,
            invalid_view,
            late_view,
            on_time_view,
            deduped_view,
            keyed_view,
        ),
        inserts=(insert_windows, insert_late, insert_dlq),
    )


def _story_key(settings: AggregateSettings) -> str:
    if settings.dedupe_by_duplicate_of:
        return "COALESCE(duplicate_of, id)"
    if settings.dedupe_by_id:
        return "id"
    return "id"


def _window_query(window_table: str) -> str:
    return f"""  SELECT window_start, window_end, dimension, `key`,
    COUNT(*) AS articles,
    COUNT(*) FILTER (WHERE sentiment = 'negative') AS negative,
    COUNT(*) FILTER (WHERE sentiment = 'neutral') AS neutral,
    COUNT(*) FILTER (WHERE sentiment = 'positive') AS positive,
    SUM(sentiment_score) AS score_sum,
    SUM(sentiment_score * confidence) AS weighted_sum,
    SUM(confidence) AS weight_sum
  FROM TABLE({window_table})
  GROUP BY window_start, window_end, dimension, `key`"""
