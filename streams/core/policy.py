"""The policy: which rules are on, their windows, limits and settle delays.

A policy is a versioned TOML (or JSON) file validated here; every decision
names the version so that ops can tell which policy suppressed a message.
The defaults are the contract's table, so no file means the contract.
Durations are written ``"90s"``, ``"5m"``, ``"24h"``, ``"30d"`` (or a number
of seconds).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from streams.core.quiet_hours import known_zone, parse_clock
from streams.core.vocabulary import RULE_IDS, TRIGGERS
from streams.errors import PolicyError

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration_ms(value: Any) -> int:
    """Accept ``"5m"`` style strings or plain seconds; return milliseconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '5m', '24h', '30d' or a number of seconds")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(value * 1000)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration like '5m', '24h', '30d', got {value!r}")


def format_duration(ms: int) -> str:
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


DurationMs = Annotated[int, BeforeValidator(parse_duration_ms)]
Mode = Literal["enforce", "monitor"]


class _Strict(BaseModel):
    # validate_default: duration defaults are written like the file ("30d") and parsed once.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RulePolicy(_Strict):
    """Common knobs: ``monitor`` sends the message but records the rule that would fire."""

    enabled: bool = True
    mode: Mode = "enforce"


class DuplicateMessagePolicy(RulePolicy):
    retention: DurationMs = "30d"  # type: ignore[assignment]


class StalePolicy(RulePolicy):
    max_age: DurationMs = "24h"  # type: ignore[assignment]


class WelcomeBackPolicy(RulePolicy):
    min_sessions: Annotated[int, Field(ge=1, le=1000)] = 2


class WinBackPolicy(RulePolicy):
    window: DurationMs = "30d"  # type: ignore[assignment]


class RecommendationPolicy(RulePolicy):
    # "rewrite" strips the offending SKUs; "suppress" drops the whole message.
    action: Literal["rewrite", "suppress"] = "rewrite"


class ReturnedProductPolicy(RecommendationPolicy):
    window: DurationMs = "30d"  # type: ignore[assignment]


class RecentPurchasePolicy(RecommendationPolicy):
    window: DurationMs = "14d"  # type: ignore[assignment]


class StaleSignalPolicy(RecommendationPolicy):
    """A recommended SKU whose ``context.basis`` signal is older than this before the
    message's created_at is removed (stale signals)."""

    max_signal_age: DurationMs = "30d"  # type: ignore[assignment]


class DuplicateContentPolicy(RulePolicy):
    window: DurationMs = "24h"  # type: ignore[assignment]


class FrequencyCapPolicy(RulePolicy):
    window: DurationMs = "24h"  # type: ignore[assignment]
    limit: Annotated[int, Field(ge=0, le=10_000)] = 3


class Rules(_Strict):
    duplicate_message: DuplicateMessagePolicy = DuplicateMessagePolicy()
    consent_withdrawn: RulePolicy = RulePolicy()
    stale_trigger: StalePolicy = StalePolicy()
    cart_already_purchased: RulePolicy = RulePolicy()
    welcome_back_to_new_customer: WelcomeBackPolicy = WelcomeBackPolicy()
    welcome_to_existing_customer: RulePolicy = RulePolicy()
    review_request_for_returned_order: RulePolicy = RulePolicy()
    win_back_active_customer: WinBackPolicy = WinBackPolicy()
    recommends_returned_product: ReturnedProductPolicy = ReturnedProductPolicy()
    recommends_recent_purchase: RecentPurchasePolicy = RecentPurchasePolicy()
    duplicate_content: DuplicateContentPolicy = DuplicateContentPolicy()
    frequency_cap: FrequencyCapPolicy = FrequencyCapPolicy()
    recommends_from_stale_signal: StaleSignalPolicy = StaleSignalPolicy()
    cap_exceeded: RulePolicy = RulePolicy()


class Settle(_Strict):
    """Per-trigger settle delay: how long a candidate is held for contradicting events."""

    abandoned_cart: DurationMs = "5m"  # type: ignore[assignment]
    welcome: DurationMs = 0
    welcome_back: DurationMs = 0
    product_recommendation: DurationMs = 0
    review_request: DurationMs = 0
    win_back: DurationMs = 0
    replenishment: DurationMs = 0
    promotion: DurationMs = 0

    def for_trigger(self, trigger: str) -> int:
        return int(getattr(self, trigger))


class StateLimits(_Strict):
    """Bounds on per-customer state; retention must cover the longest window."""

    retention: DurationMs = "35d"  # type: ignore[assignment]
    # An order's SKUs and returned SKUs, kept compactly so a late review request is checked.
    order_retention: DurationMs = "180d"  # type: ignore[assignment]
    max_events: Annotated[int, Field(ge=10, le=100_000)] = 200
    max_sends: Annotated[int, Field(ge=10, le=100_000)] = 200
    max_message_ids: Annotated[int, Field(ge=10, le=1_000_000)] = 1000
    max_orders: Annotated[int, Field(ge=10, le=100_000)] = 200
    # Held candidates per customer, by count and by their bytes (held and not yet published
    # together): the customer's state is one changelog record, and the broker refuses
    # records over its max.message.bytes (1 MiB by default). A candidate beyond either
    # limit is dead-lettered, saying so; the ones already held are decided as usual.
    max_held: Annotated[int, Field(ge=1, le=100_000)] = 100
    max_held_bytes: Annotated[int, Field(ge=64 * 1024, le=64 * 1024 * 1024)] = 512 * 1024
    # A customer with no activity (any event or message) for this long is forgotten;
    # a withdrawn consent is kept.
    customer_ttl: DurationMs = "400d"  # type: ignore[assignment]


class Lateness(_Strict):
    """Per input topic: how far one producer instance may run behind another.

    The topic's frontier is held back by this much, so an event that much out of
    order is still in time for every decision it can change."""

    purchases: DurationMs = 0
    returns: DurationMs = 0
    sessions: DurationMs = 0
    consents: DurationMs = 0
    outbound: DurationMs = 0
    identities: DurationMs = 0

    def for_topic(self, role: str) -> int:
        return int(getattr(self, role))


class TimePolicy(_Strict):
    # An event time further than this after its record time is a broken clock: dead-letter.
    max_clock_skew: DurationMs = "1h"  # type: ignore[assignment]
    allowed_lateness: Lateness = Lateness()


class Misfire(_Strict):
    """When a rule's suppression rate jumps: over the last ``window`` of decisions (by
    the candidates' created_at) against the ``baseline`` before it, a rule misfires
    when its rate is at least ``factor`` times its baseline rate plus ``min_jump``, on
    at least ``min_count`` suppressions. A warning, a metric, the dashboard."""

    window: DurationMs = "10m"  # type: ignore[assignment]
    baseline: DurationMs = "6h"  # type: ignore[assignment]
    factor: Annotated[float, Field(ge=1.0, le=1000.0)] = 3.0
    min_jump: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    min_count: Annotated[int, Field(ge=1, le=1_000_000)] = 20


class Cap(_Strict):
    """One cap across channels and categories: at most ``limit`` sends matching its
    filters within a rolling ``window`` (an empty filter matches everything). With
    ``overflow = "defer"`` a candidate over it waits for room, for at most ``max_defer``
    after created_at."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    channels: tuple[Literal["email", "sms", "push", "in_app"], ...] = ()
    categories: tuple[Literal["marketing", "transactional"], ...] = ("marketing",)
    triggers: tuple[Literal[TRIGGERS], ...] = ()  # type: ignore[valid-type]
    limit: Annotated[int, Field(ge=0, le=100_000)]
    window: DurationMs = "24h"  # type: ignore[assignment]
    overflow: Literal["suppress", "defer"] = "suppress"
    max_defer: DurationMs = "24h"  # type: ignore[assignment]

    def matches(self, channel: str, category: str, trigger: str) -> bool:
        return (
            (not self.channels or channel in self.channels)
            and (not self.categories or category in self.categories)
            and (not self.triggers or trigger in self.triggers)
        )


class QuietMaxHold(_Strict):
    """How long after created_at a candidate may wait for quiet hours to end, per trigger."""

    abandoned_cart: DurationMs = "6h"  # type: ignore[assignment]
    welcome: DurationMs = "12h"  # type: ignore[assignment]
    welcome_back: DurationMs = "12h"  # type: ignore[assignment]
    product_recommendation: DurationMs = "12h"  # type: ignore[assignment]
    review_request: DurationMs = "12h"  # type: ignore[assignment]
    win_back: DurationMs = "12h"  # type: ignore[assignment]
    replenishment: DurationMs = "12h"  # type: ignore[assignment]
    promotion: DurationMs = "12h"  # type: ignore[assignment]

    def for_trigger(self, trigger: str) -> int:
        return int(getattr(self, trigger))


class QuietHours(_Strict):
    """Marketing on ``channels`` is not sent between ``start`` and ``end`` local time
    (quiet hours). Off (no channel) by default: an upgrade changes no decision."""

    start: str = "21:00"
    end: str = "08:00"
    channels: tuple[Literal["email", "sms", "push", "in_app"], ...] = ()
    default_timezone: str = "UTC"
    spread: DurationMs = "30m"  # type: ignore[assignment]
    max_hold: QuietMaxHold = QuietMaxHold()

    @model_validator(mode="after")
    def _valid(self) -> QuietHours:
        parse_clock(self.start)
        parse_clock(self.end)
        if not known_zone(self.default_timezone):
            raise ValueError(
                f"quiet_hours.default_timezone: unknown IANA time zone {self.default_timezone!r}"
            )
        return self

    @property
    def start_min(self) -> int:
        return parse_clock(self.start)

    @property
    def end_min(self) -> int:
        return parse_clock(self.end)


PERSONALISED: tuple[str, ...] = ("product_recommendation", "replenishment", "abandoned_cart")


class Blast(_Strict):
    """Whole-campaign checks (campaigns): a campaign trips when, in one event-time window
    of ``window`` (aligned to the epoch), it has at least ``min_messages`` candidates and
    one content fingerprint covers at least ``max_share`` of them (``personalised``
    triggers only), or when its candidates exceed ``volume_factor`` times the median of
    its own earlier windows within ``volume_history`` (never on its first window). A
    tripped campaign's candidates are held for at most ``hold_ttl``."""

    enabled: bool = False
    window: DurationMs = "15m"  # type: ignore[assignment]
    min_messages: Annotated[int, Field(ge=2, le=10_000_000)] = 200
    max_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.3
    volume_factor: Annotated[float, Field(ge=1.0, le=1_000_000.0)] = 10.0
    volume_history: DurationMs = "7d"  # type: ignore[assignment]
    hold_ttl: DurationMs = "6h"  # type: ignore[assignment]
    personalised: tuple[Literal[TRIGGERS], ...] = PERSONALISED  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _windows(self) -> Blast:
        if self.window <= 0:
            raise ValueError("blast.window must be positive")
        if self.volume_history < self.window:
            raise ValueError("blast.volume_history must be at least blast.window")
        return self


class Links(_Strict):
    """Identity links (``identity``): a link that would make a group of more than
    ``max_group`` ids is refused (shared devices and test ids over-merge people)."""

    max_group: Annotated[int, Field(ge=2, le=1000)] = 20


class Policy(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=128)] = "default-1"
    settle: Settle = Settle()
    time: TimePolicy = TimePolicy()
    rules: Rules = Rules()
    state: StateLimits = StateLimits()
    misfire: Misfire = Misfire()
    blast: Blast = Blast()
    quiet_hours: QuietHours = QuietHours()
    caps: tuple[Cap, ...] = ()
    links: Links = Links()

    @model_validator(mode="after")
    def _caps_valid(self) -> Policy:
        names = [c.name for c in self.caps]
        if len(set(names)) != len(names):
            raise ValueError(f"caps: every cap needs its own name, got {names}")
        if self.blast.enabled and any(c.overflow == "defer" for c in self.caps):
            raise ValueError(
                'caps with overflow = "defer" and [blast] cannot be on together yet: '
                "a deferred candidate would wait outside the campaigns' order"
            )
        return self

    @model_validator(mode="after")
    def _retention_covers_windows(self) -> Policy:
        need = self.longest_lookback_ms()
        if self.state.retention < need:
            raise ValueError(
                f"state.retention ({format_duration(self.state.retention)}) must be at least the "
                f"longest rule window plus the longest settle delay ({format_duration(need)}), "
                "or decisions would read pruned state"
            )
        st = self.state
        longest = max(st.retention, st.order_retention, self.rules.duplicate_message.retention)
        if st.customer_ttl < longest:
            raise ValueError(
                f"state.customer_ttl ({format_duration(st.customer_ttl)}) must be at least "
                "state.retention, state.order_retention and rules.duplicate_message.retention"
            )
        return self

    @property
    def max_settle(self) -> int:
        return max(self.settle.for_trigger(t) for t in TRIGGERS)

    def longest_lookback_ms(self) -> int:
        r = self.rules
        windows = [
            r.win_back_active_customer.window,
            r.recommends_returned_product.window,
            r.recommends_recent_purchase.window,
            r.duplicate_content.window,
            r.frequency_cap.window,
            *(c.window for c in self.caps),
        ]
        settles = [self.settle.for_trigger(t) for t in TRIGGERS]
        return max(windows) + max(settles) + self.longest_hold

    @property
    def longest_hold(self) -> int:
        """How long after created_at a candidate can be held beyond its deadline (quiet
        hours, deferring caps): a cap counts a held send from when it went out."""
        qh = self.quiet_hours
        quiet = max(qh.max_hold.for_trigger(t) for t in TRIGGERS) if qh.channels else 0
        defer = max((c.max_defer for c in self.caps if c.overflow == "defer"), default=0)
        return max(quiet, defer)

    def rule(self, rule_id: str) -> RulePolicy:
        return getattr(self.rules, rule_id)

    def is_on(self, rule_id: str) -> bool:
        return self.rule(rule_id).enabled


DEFAULT_POLICY = Policy()


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid policy {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def policy_from_mapping(data: dict[str, Any], source: str = "<mapping>") -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_format_errors(exc, source)) from exc


def load_policy(path: str | Path | None) -> Policy:
    """Load and validate a policy file; ``None`` gives the contract's defaults."""
    if path is None:
        return DEFAULT_POLICY
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc.strerror}") from exc
    try:
        if p.suffix == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file {p} is not valid TOML/JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {p}: expected a table at the top level")
    return policy_from_mapping(data, str(p))


def policy_as_toml(policy: Policy) -> str:
    """Render the effective policy (defaults included) as a TOML file a user can edit."""
    lines = [f'version = "{policy.version}"', "", "[settle]"]
    for t in TRIGGERS:
        lines.append(f'{t} = "{format_duration(policy.settle.for_trigger(t))}"')
    lines += ["", "[time]", f'max_clock_skew = "{format_duration(policy.time.max_clock_skew)}"']
    lines += ["", "[time.allowed_lateness]"]
    for role in Lateness.model_fields:
        lines.append(f'{role} = "{format_duration(policy.time.allowed_lateness.for_topic(role))}"')
    lines += ["", "[state]"]
    st = policy.state
    lines += [
        f'retention = "{format_duration(st.retention)}"',
        f'order_retention = "{format_duration(st.order_retention)}"',
        f"max_events = {st.max_events}",
        f"max_sends = {st.max_sends}",
        f"max_message_ids = {st.max_message_ids}",
        f"max_orders = {st.max_orders}",
        f"max_held = {st.max_held}",
        f"max_held_bytes = {st.max_held_bytes}",
        f'customer_ttl = "{format_duration(st.customer_ttl)}"',
    ]
    for rule_id in RULE_IDS:
        lines += ["", f"[rules.{rule_id}]"]
        for key, value in policy.rule(rule_id).model_dump().items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif key in ("window", "retention", "max_age", "max_signal_age"):
                lines.append(f'{key} = "{format_duration(value)}"')
            elif isinstance(value, str):
                lines.append(f'{key} = "{value}"')
            else:
                lines.append(f"{key} = {value}")
    mf = policy.misfire
    lines += [
        "",
        "[misfire]",
        f'window = "{format_duration(mf.window)}"',
        f'baseline = "{format_duration(mf.baseline)}"',
        f"factor = {mf.factor}",
        f"min_jump = {mf.min_jump}",
        f"min_count = {mf.min_count}",
    ]
    bl = policy.blast
    lines += [
        "",
        "[blast]",
        f"enabled = {'true' if bl.enabled else 'false'}",
        f'window = "{format_duration(bl.window)}"',
        f"min_messages = {bl.min_messages}",
        f"max_share = {bl.max_share}",
        f"volume_factor = {bl.volume_factor}",
        f'volume_history = "{format_duration(bl.volume_history)}"',
        f'hold_ttl = "{format_duration(bl.hold_ttl)}"',
        "personalised = [" + ", ".join(f'"{t}"' for t in bl.personalised) + "]",
    ]
    lines += ["", "[links]", f"max_group = {policy.links.max_group}"]
    for cap in policy.caps:
        lines += [
            "",
            "[[caps]]",
            f'name = "{cap.name}"',
            "channels = [" + ", ".join(f'"{c}"' for c in cap.channels) + "]",
            "categories = [" + ", ".join(f'"{c}"' for c in cap.categories) + "]",
            "triggers = [" + ", ".join(f'"{t}"' for t in cap.triggers) + "]",
            f"limit = {cap.limit}",
            f'window = "{format_duration(cap.window)}"',
            f'overflow = "{cap.overflow}"',
            f'max_defer = "{format_duration(cap.max_defer)}"',
        ]
    qh = policy.quiet_hours
    lines += [
        "",
        "[quiet_hours]",
        f'start = "{qh.start}"',
        f'end = "{qh.end}"',
        "channels = [" + ", ".join(f'"{c}"' for c in qh.channels) + "]",
        f'default_timezone = "{qh.default_timezone}"',
        f'spread = "{format_duration(qh.spread)}"',
        "",
        "[quiet_hours.max_hold]",
    ]
    for t in TRIGGERS:
        lines.append(f'{t} = "{format_duration(qh.max_hold.for_trigger(t))}"')
    return "\n".join(lines) + "\n"
