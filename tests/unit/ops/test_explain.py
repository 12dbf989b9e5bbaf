"""``explain`` of a held message says why it waited and until when."""

from __future__ import annotations

from typing import Any

from streams.ops.explain import Story
from streams.ops.release import Found


def found(role: str, record: dict[str, Any]) -> Found:
    return Found(role, role.replace("_", "-"), 0, 7, 0, b"c-42", b"", record)


def test_a_message_held_for_quiet_hours_says_where_and_until_when() -> None:
    sanity = {"action": "send", "decided_at": "2026-11-21T07:12:03Z", "policy": "p",
              "removed_skus": [], "held_ms": 1200, "send_at": "2026-11-21T07:12:00Z",
              "held_for": "quiet_hours",
              "timezone": {"zone": "Europe/Berlin", "source": "session",
                           "tzdata": "2026.6"}}  # fmt: skip
    message = {"message_id": "m-1", "customer_id": "c-42", "trigger": "promotion",
               "sanity": sanity}  # fmt: skip
    story = Story("m-1", [found("send_queue", message)])
    text = story.render()
    assert (
        "  held for quiet hours in Europe/Berlin (from session, tzdata 2026.6) until "
        "2026-11-21T07:12:00Z" in text
    )


def test_a_suppression_after_a_deferral_says_it_was_held_by_a_cap() -> None:
    record = {"message": {"message_id": "m-2", "customer_id": "c-42"},
              "rule": "cap_deferred_expired", "reason": "cap sms: ...", "evidence": [],
              "decided_at": "2026-11-21T07:12:03Z", "policy": "p", "held_for": "cap"}  # fmt: skip
    text = Story("m-2", [found("suppressed", record)]).render()
    assert "SUPPRESSED by cap_deferred_expired" in text and "  held for a cap with no room" in text


def test_a_message_never_held_says_nothing_of_holds() -> None:
    sanity = {"action": "send", "decided_at": "x", "policy": "p", "removed_skus": [],
              "held_ms": 0, "send_at": "2026-11-21T07:12:00Z"}  # fmt: skip
    story = Story("m-3", [found("send_queue", {"message_id": "m-3", "sanity": sanity})])
    assert "held for" not in story.render()
