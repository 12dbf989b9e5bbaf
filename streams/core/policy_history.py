"""Policy versions over event time: which policy decides which candidate.

A policy applied live (``trigger-sanity policy apply``) takes effect at an
*event time* T, not at the moment a worker happens to read it: a candidate
is decided by the newest version whose effective time is at or before its
``created_at``. Every worker, on every partition, and an offline replay given
the same history, therefore pick the same version for the same message,
whatever their lag, and every decision names it.

Only what a decision reads may change live: rules on/off, enforce/monitor,
thresholds and the windows a rule looks back over inside what the state
keeps. What decides how long facts are kept or when a candidate is due
(settle delays, lateness, clock skew, state limits and retention, and the
windows that set how far back sends and message ids are kept) shapes the
state itself; changing it needs a restart with the new file, and ``apply``
refuses such a policy saying which field it was.

The versions travel on a compacted topic (one record per applied version,
keyed by its sequence number); ``PolicyRecord`` is that record.
"""

from __future__ import annotations

import bisect
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict

from streams.core.clock import NEVER, iso
from streams.core.policy import Policy, policy_as_toml, policy_from_mapping
from streams.errors import PolicyError

# Fields of a policy that shape state or timing, as dotted paths: not changeable live.
FIXED_FIELDS: tuple[str, ...] = (
    "settle",
    "time",
    "state",
    "rules.duplicate_message.retention",
    "rules.duplicate_content.window",
    "rules.frequency_cap.window",
    "blast",
    "quiet_hours",
    "caps",
)


class PolicyRecord(BaseModel):
    """One applied version, as written to the policy topic (key: ``seq``, zero-padded)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    seq: int
    version: str
    effective_at: str  # RFC 3339: candidates created at or after it use this version
    effective_ms: int
    applied_by: str
    applied_at: str
    note: str | None = None
    rollback_of: str | None = None  # the version this record rolled back from, if any
    policy: dict[str, Any]  # as in a policy file: durations written "30d"


def as_mapping(policy: Policy) -> dict[str, Any]:
    """The policy as a policy file's table (durations as "30d"): what the topic carries,
    readable by people and by ``policy_from_mapping`` alike."""
    return tomllib.loads(policy_as_toml(policy))


@dataclass(frozen=True, slots=True)
class Version:
    effective_ms: int
    seq: int
    policy: Policy
    record: PolicyRecord | None  # None for the worker's own file (the base)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def fixed_changes(base: Policy, new: Policy) -> list[str]:
    """Dotted names of the fields that differ and cannot change without a restart."""
    return [f for f in FIXED_FIELDS if _get(base, f) != _get(new, f)]


def check_live(base: Policy, new: Policy) -> None:
    changed = fixed_changes(base, new)
    if changed:
        raise PolicyError(
            f"policy {new.version} changes {', '.join(changed)}, which shape what state is "
            "kept and when candidates are due: that needs every worker restarted with the "
            "new policy file (TRIGGER_SANITY_POLICY_FILE), not a live apply"
        )


class PolicyHistory:
    """The base policy (the worker's file, in force from the beginning of time) and the
    versions applied since, ordered by effective time (ties: the later applied wins)."""

    def __init__(self, base: Policy) -> None:
        self.base = base
        self._versions: list[Version] = [Version(NEVER, -1, base, None)]
        self._keys: list[tuple[int, int]] = [(NEVER, -1)]
        self.rejected: list[tuple[int, str]] = []  # (seq, why) of records not taken

    def add(self, rec: PolicyRecord) -> bool:
        """Take one record from the topic; False (and remembered in ``rejected``) when it
        cannot apply to this worker's base policy. A repeated seq is ignored."""
        if any(v.seq == rec.seq for v in self._versions):
            return False
        try:
            policy = policy_from_mapping(rec.policy, f"version {rec.version} (seq {rec.seq})")
            check_live(self.base, policy)
        except PolicyError as exc:
            self.rejected.append((rec.seq, str(exc)))
            return False
        key = (rec.effective_ms, rec.seq)
        i = bisect.bisect_right(self._keys, key)
        self._keys.insert(i, key)
        self._versions.insert(i, Version(rec.effective_ms, rec.seq, policy, rec))
        return True

    def at(self, event_ms: int) -> Policy:
        """The policy deciding a candidate created at ``event_ms``."""
        if len(self._versions) == 1:
            return self.base
        return self.version_at(event_ms).policy

    def version_at(self, event_ms: int) -> Version:
        i = bisect.bisect_right(self._keys, (event_ms, 2**62)) - 1
        return self._versions[i]

    @property
    def versions(self) -> list[Version]:
        return list(self._versions)

    @property
    def latest(self) -> Version:
        return max(self._versions, key=lambda v: v.seq)

    def summary(self) -> list[dict[str, Any]]:
        """For the stats page: each version and when it takes effect."""
        return [
            {
                "version": v.policy.version,
                "seq": v.seq,
                "effective_at": None if v.effective_ms == NEVER else iso(v.effective_ms),
            }
            for v in self._versions
        ]


def read_records(lines: Iterable[bytes]) -> Iterator[PolicyRecord]:
    """Policy records from JSON lines (``policy history --json``, for offline replay)."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield PolicyRecord.model_validate(orjson.loads(line))
        except (orjson.JSONDecodeError, ValueError) as exc:
            raise PolicyError(f"policy history line {n}: {exc}") from exc


def history_from_file(base: Policy, path: str) -> PolicyHistory:
    """The history an offline replay uses: the base policy plus every record in the file;
    a record that cannot apply is an error here (a worker would skip it and say so)."""
    hist = PolicyHistory(base)
    try:
        with open(path, "rb") as fh:
            for rec in read_records(fh):
                if not hist.add(rec) and hist.rejected and hist.rejected[-1][0] == rec.seq:
                    raise PolicyError(f"{path}: version {rec.version}: {hist.rejected[-1][1]}")
    except OSError as exc:
        raise PolicyError(f"cannot read policy history {path}: {exc.strerror}") from exc
    return hist
