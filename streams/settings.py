"""Settings: one frozen class, from env vars (``TRIGGER_SANITY_*``) or a TOML file.

Precedence: init arguments > environment > ``.env`` > the TOML file named by
``TRIGGER_SANITY_CONFIG_FILE`` (default ``trigger-sanity.toml`` if present) >
defaults. Every field is documented in the README with its default.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from streams.contract.topics import TopicNames
from streams.errors import ConfigError

ENV_PREFIX = "TRIGGER_SANITY_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    app_id: str = "trigger-sanity"
    partitions: int = Field(default=8, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=16)

    topic_purchases: str = "purchases"
    topic_returns: str = "returns"
    topic_sessions: str = "sessions"
    topic_consents: str = "consents"
    topic_outbound: str = "outbound"
    topic_identities: str = "identities"
    topic_send_queue: str = "send-queue"
    topic_suppressed: str = "suppressed"
    topic_dead_letter: str = "dead-letter"
    topic_late_evidence: str = "late-evidence"
    topic_releases: str = "releases"
    topic_policy: str = "policy"
    topic_campaigns: str = "campaigns"

    policy_file: Path | None = None
    store: str = "memory://"
    data_dir: Path = Path("trigger-sanity-data")
    web_enabled: bool = True
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA certificates that signed the brokers' (SSL, "
        "SASL_SSL); unset: the system's trusted CAs",
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that ask for one"
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="PEM private key of ssl_certfile (if not in that file)"
    )
    ssl_check_hostname: bool = Field(
        default=True, description="check that the broker's certificate names its host"
    )

    max_record_bytes: int = Field(default=256 * 1024, ge=1024)
    gc_threshold: int = Field(
        default=20_000,
        ge=0,
        description="allocations between two passes of Python's cyclic garbage collector "
        "over its youngest objects (0: leave Python's own, 700 on 3.11-3.13)",
    )
    idle_check_interval: float = Field(
        default=1.0, gt=0, description="seconds between idleness checks"
    )
    idle_after: float = Field(
        default=0.0,
        ge=0,
        description="seconds an input partition must stay caught up, with no new record, "
        "before it counts as idle",
    )
    marker_interval: float = Field(
        default=0.1, gt=0, description="seconds between progress markers of a busy partition"
    )
    caught_up_within: float = Field(
        default=1.0,
        gt=0,
        description="seconds within which an input partition's last fetch answer must have "
        "come for it to count as caught up, and another partition's progress marker for its "
        "idleness to count: a broker that stopped answering is not idleness",
    )
    outage_grace: float = Field(
        default=30.0,
        ge=0,
        description="seconds after the broker answers an input partition's fetches again, "
        "following a gap longer than caught_up_within, before the partition may count as "
        "caught up: producers reconnect with backoff and send what they buffered during "
        "the outage only then",
    )
    publish_interval: float = Field(
        default=0.05,
        gt=0,
        description="longest wait between publish cycles: a cycle starts as soon as "
        "decisions are queued and the previous one is done, else after this long (a "
        "decision goes out once the state that records it is durable)",
    )
    max_dirty: int = Field(
        default=2000,
        ge=1,
        description="customers changed in memory before their state is written back to the "
        "changelog (it also is every publish and commit cycle)",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="records fetched and handled as one batch: markers, idleness and "
        "releases once per batch and partition, not per record",
    )
    fetch_min_bytes: int = Field(
        default=16 * 1024,
        ge=1,
        le=16 * 1024 * 1024,
        description="bytes the broker gathers before it answers a fetch (or the wait "
        "runs out): more gives live-rate batches of more records, less CPU per record",
    )
    fetch_max_wait_ms: int = Field(
        default=20,
        ge=1,
        le=60_000,
        description="milliseconds the broker may hold a fetch waiting for "
        "fetch_min_bytes; a caught-up partition's records wait at most this long",
    )
    state_cache: int = Field(
        default=20_000,
        ge=0,
        description="customers kept decoded in memory (most recently used), so a busy "
        "customer's state is not decoded again for every record",
    )
    linger_ms: int = Field(
        default=5,
        ge=0,
        description="milliseconds the producer waits to batch records (decisions, state)",
    )
    sweep_interval: float = Field(default=300.0, gt=0, description="seconds between state sweeps")
    snapshot_max_age: float = Field(
        default=43_200.0,
        gt=0,
        description="seconds after which the rocksdb:// store's local copy of a partition is "
        "not trusted and the partition is read from the changelog's beginning: keep it under "
        "the changelog's delete.retention.ms (Kafka's default 24 h), after which compaction "
        "may drop deletes the copy would miss",
    )
    policy_poll_interval: float = Field(
        default=1.0, gt=0, description="seconds between reads of the policy topic"
    )
    guarantee: Literal["exactly_once", "at_least_once"] = Field(
        default="exactly_once",
        description="exactly_once: state, decisions and input offsets commit in one Kafka "
        "transaction per partition and commit interval (readers must read committed); "
        "at_least_once: no transactions, and a crash may publish decisions again "
        "(byte-identical copies)",
    )
    commit_interval: float = Field(
        default=0.1,
        gt=0,
        description="seconds between commits: with exactly_once a read_committed consumer "
        "sees a decision only once its transaction commits, so this bounds the latency "
        "added; longer means fewer transactions",
    )
    transaction_timeout: float | None = Field(
        default=None,
        gt=0,
        description="seconds the broker lets a transaction stay open before aborting it; "
        "default: the smaller of 10 and two thirds of session_timeout (it must stay below "
        "it)",
    )
    session_timeout: float = Field(
        default=45.0, ge=3, description="seconds before a dead worker's partitions move to another"
    )

    @field_validator("gc_threshold")
    @classmethod
    def _sane_gc_threshold(cls, v: int) -> int:
        if 0 < v < 100:
            raise ValueError(
                f"{v} would run the collector every few allocations: use 0 (Python's own) "
                "or at least 100 (default 20000)"
            )
        return v

    @field_validator("store")
    @classmethod
    def _supported_store(cls, v: str) -> str:
        # Not faust's rocksdb driver: it files a write under the partition of the event
        # being processed, and the worker writes state back in batches, outside any event,
        # so a customer could land in another partition's database. rocksdb:// here is the
        # memory store plus a local copy of the changelog (streams.worker.snapshot).
        if v.split(":", 1)[0] not in ("memory", "rocksdb"):
            raise ValueError(
                f"{v!r} is not supported: use memory:// (state loaded from the changelog in "
                "bulk at start) or rocksdb:// (the same, plus a local copy under data_dir, "
                "so a restart reads only the changelog's tail)"
            )
        return v

    @model_validator(mode="after")
    def _security_consistent(self) -> Settings:
        """Mismatches a client only finds out about at the broker (a traceback, or a
        'no broker answers' for a broker that is up) are refused here, in one line."""
        proto = self.security_protocol
        sasl = proto.startswith("SASL_")
        if self.sasl_mechanism and not sasl:
            raise ValueError(
                f"sasl_mechanism {self.sasl_mechanism} needs security_protocol SASL_SSL or "
                f"SASL_PLAINTEXT (it is {proto}, which never authenticates)"
            )
        if sasl and not self.sasl_mechanism:
            raise ValueError(
                f"security_protocol {proto} needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or "
                "SCRAM-SHA-512), sasl_username and sasl_password"
            )
        if sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {proto} needs sasl_username and sasl_password")
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        for name, path in files.items():
            if path is None:
                continue
            if not proto.endswith("SSL"):
                raise ValueError(f"{name} is set but security_protocol {proto} does not use TLS")
            if not path.is_file():
                raise ValueError(f"{name}: no such file {path}")
        return self

    @model_validator(mode="after")
    def _transaction_below_session(self) -> Settings:
        """A transaction left open by a worker that stopped answering must be aborted by
        the broker before its partitions move on: else the next owner's readers wait on
        it (the last stable offset stays behind it)."""
        t = self.transaction_timeout
        if t is not None and t >= self.session_timeout:
            raise ValueError(
                f"transaction_timeout ({t:g} s) must be below session_timeout "
                f"({self.session_timeout:g} s)"
            )
        return self

    @property
    def exactly_once(self) -> bool:
        return self.guarantee == "exactly_once"

    @property
    def effective_transaction_timeout(self) -> float:
        """Seconds: the setting, or the smaller of 10 and two thirds of the session."""
        if self.transaction_timeout is not None:
            return self.transaction_timeout
        return min(10.0, self.session_timeout * 2 / 3)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The one TLS context every client gets (kafka-python, aiokafka, faust), None
        without TLS. Verifies the broker's certificate always."""
        if not self.security_protocol.endswith("SSL"):
            return None
        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            ctx.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return ctx

    @property
    def keeps_local_copy(self) -> bool:
        return self.store.startswith("rocksdb:")

    @field_validator("bootstrap_servers")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must name at least one host:port")
        return v

    @property
    def topics(self) -> TopicNames:
        return TopicNames(
            {
                "purchases": self.topic_purchases,
                "returns": self.topic_returns,
                "sessions": self.topic_sessions,
                "consents": self.topic_consents,
                "outbound": self.topic_outbound,
                "identities": self.topic_identities,
                "send_queue": self.topic_send_queue,
                "suppressed": self.topic_suppressed,
                "dead_letter": self.topic_dead_letter,
                "late_evidence": self.topic_late_evidence,
                "releases": self.topic_releases,
                "campaigns": self.topic_campaigns,
                "policy": self.topic_policy,
            }
        )

    @property
    def reroute_topic(self) -> str:
        """The app's internal topic for records a producer put on the wrong partition."""
        return f"{self.app_id}-reroute"

    def kafka_client_kwargs(self) -> dict[str, object]:
        """Connection options for kafka-python clients (admin, producer, consumer), which
        aiokafka's take by the same names."""
        kw: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        ctx = self.ssl_context()
        if ctx is not None:
            kw["ssl_context"] = ctx
        return kw

    def kafka_producer_kwargs(self) -> dict[str, object]:
        """For kafka-python producers: acknowledged by all replicas, and idempotent. Without
        idempotence a retried batch can land after later ones (it retries with 5 requests
        in flight), and a partition that is out of order is late data to the worker."""
        return {**self.kafka_client_kwargs(), "acks": "all", "enable_idempotence": True}

    def kafka_consumer_kwargs(self) -> dict[str, object]:
        """For kafka-python consumers: its default 1 MB frame limit is smaller than the
        50 MB a fetch may ask for, which fails on any partition with a real backlog. They
        read committed records only: what an aborted transaction wrote (a release that
        lost, and any transactional producer's) is never shown, counted or replayed, and
        end offsets are the last stable offsets."""
        return {
            **self.kafka_client_kwargs(),
            "isolation_level": "read_committed",
            "fetch_max_bytes": 16 * 1024 * 1024,
            "max_partition_fetch_bytes": 1024 * 1024,
            "receive_message_max_bytes": 64 * 1024 * 1024,
        }

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get(f"{ENV_PREFIX}CONFIG_FILE", "trigger-sanity.toml")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        if Path(path).is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)


def isolated_env(run: str, bootstrap: str, **overrides: str) -> dict[str, str]:
    """``TRIGGER_SANITY_*`` variables for a deployment of its own: app id and topic names
    prefixed by ``run``. The demo, the integration tests and the benchmarks use it so
    that runs never see each other's records, offsets or state."""
    from streams.contract.topics import REGISTRY

    env = {
        f"{ENV_PREFIX}BOOTSTRAP_SERVERS": bootstrap,
        f"{ENV_PREFIX}APP_ID": run,
        f"{ENV_PREFIX}WEB_ENABLED": "false",
    }
    for spec in REGISTRY:
        env[f"{ENV_PREFIX}TOPIC_{spec.role.upper()}"] = f"{run}.{spec.default_name}"
    env.update({f"{ENV_PREFIX}{k.upper()}": v for k, v in overrides.items()})
    return env


def settings_from_env(env: dict[str, str]) -> Settings:
    """Settings from an explicit mapping of ``TRIGGER_SANITY_*`` variables (not os.environ)."""
    fields = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    return Settings.model_validate(fields)


def load_settings() -> Settings:
    """The settings, or a ``ConfigError`` with one line per field that cannot be read
    (named by its environment variable; secrets never echoed)."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(describe_invalid(exc)) from None


def describe_invalid(exc: ValidationError) -> str:
    lines = ["invalid settings (environment, .env or the TOML config file):"]
    for err in exc.errors():
        if not err["loc"]:  # a check across fields: its input is every setting, secrets too
            lines.append(f"  {err['msg'].removeprefix('Value error, ')}")
            continue
        field = ".".join(str(p) for p in err["loc"])
        shown = "" if "password" in field else f" (got {err.get('input')!r})"
        lines.append(f"  {ENV_PREFIX}{field.upper()}: {err['msg']}{shown}")
    return "\n".join(lines)
