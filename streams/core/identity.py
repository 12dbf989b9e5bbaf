"""Identity links: which ids are one person at a given event time.

A link (``g-77 -> c-42``) is an event, not a merge: it counts from its event time on,
until an unlink of the same pair. Groups are what the links in force make of the ids
(undirected: ``g-77 -> c-42 -> c-9`` is one group however the arrows point), and
resolving them is a pure function of *which* links are visible, never of the order
they arrived in:

- a decision with deadline ``D`` sees the links with event time at or before ``D``
  that were read in time (``arr <= D``, as every other fact);
- those links are applied in (event time, event id) order; one that would join two
  ids already in one group (a cycle) or make a group larger than ``max_group`` is
  refused, an unlink of a pair not linked then is refused, a link of a pair linked
  already changes nothing.

Every partition keeps the whole book (links are rare; facts are not): a partition
can then tell, for any of its customers, which partitions need copies of that
customer's facts, without asking anyone (``Linking``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.core.clock import human
from streams.core.state import ALWAYS, NEVER, ConsentFact, PurchaseFact, ReturnFact, SessionFact

StateFact = PurchaseFact | ReturnFact | SessionFact | ConsentFact


@dataclass(slots=True)
class Link:
    event_id: str
    alias: str  # the record's customer_id (its key)
    target: str  # linked_to
    t: int
    unlink: bool = False
    source: str | None = None  # where the link was learnt (checkout, login, ...)
    arr: int = NEVER  # frontier of the identities stream when it was read
    # where it was read from (topic, partition, offset) and its bytes: a refusal is a
    # dead-letter of the input record, written by the partition that read it
    origin: tuple[str, int, int] | None = None
    raw: str = ""

    @property
    def seen_from(self) -> int:
        """The earliest deadline that sees it: its event time, or when it was read."""
        return self.t if self.t >= self.arr else self.arr

    def row(self) -> list[Any]:
        o = self.origin
        return [self.event_id, self.alias, self.target, self.t, int(self.unlink), self.source,
                self.arr, None if o is None else list(o), self.raw]  # fmt: skip

    @classmethod
    def from_row(cls, r: list[Any]) -> Link:
        o = r[7]
        origin = None if o is None else (str(o[0]), int(o[1]), int(o[2]))
        return cls(str(r[0]), str(r[1]), str(r[2]), int(r[3]), bool(r[4]),
                   None if r[5] is None else str(r[5]), int(r[6]), origin, str(r[8]))  # fmt: skip

    def describe(self) -> str:
        verb = "unlinked from" if self.unlink else "linked to"
        via = f" ({self.source})" if self.source else ""
        return f"{self.alias} {verb} {self.target} at {human(self.t)}{via} [{self.event_id}]"


@dataclass(slots=True)
class Group:
    """The ids one customer is one person with at a time, and how each got there."""

    members: dict[str, Link]  # other id -> the link through which it joined (latest on path)
    refused: dict[str, str]  # event id -> why, for links resolved on the way


NO_GROUP = Group({}, {})


class LinkBook:
    """Every link read, by event id, with an index by id; groups resolved on demand."""

    __slots__ = ("_by_id", "_reach", "links", "max_group")

    def __init__(self, max_group: int) -> None:
        self.max_group = max_group
        self.links: dict[str, Link] = {}
        self._by_id: dict[str, list[Link]] = {}
        self._reach: dict[str, set[str]] = {}  # cleared whenever a link is added

    def __len__(self) -> int:
        return len(self.links)

    def add(self, link: Link) -> bool:
        """Take a link in; False when its event id was taken already (a redelivery or the
        same link heard through another partition)."""
        if link.event_id in self.links:
            return False
        self.links[link.event_id] = link
        for cid in (link.alias, link.target):
            self._by_id.setdefault(cid, []).append(link)
        self._reach.clear()
        return True

    def linked(self, cid: str) -> bool:
        """Was ``cid`` ever named by a link (cheap: asked for every fact and decision)?"""
        return cid in self._by_id

    def touching(self, cid: str) -> list[Link]:
        """The links that name ``cid``, as alias or as target."""
        return list(self._by_id.get(cid, ()))

    def reach(self, cid: str) -> set[str]:
        """Every id that is, at some deadline, in a group with ``cid`` as the links read so
        far make them (refused links join nobody): whom its facts are copied to."""
        if cid not in self._by_id:
            return {cid}
        found = self._reach.get(cid)
        if found is None:
            ever: dict[frozenset[str], Link] = {}
            self._apply(self._visible(cid, ALWAYS), ever)
            found = set(_component(cid, ever))
            for m in found:
                self._reach[m] = found
        return found

    def _visible(self, cid: str, at: int) -> list[Link]:
        """The links a deadline ``at`` sees around ``cid``, in the order they apply: by when
        they are first seen (their event time, or when they were read if that was later),
        so that what a deadline sees only ever extends what an earlier one saw, and a
        verdict, once given, holds for every later deadline."""
        seen = {cid}
        todo = [cid]
        found: dict[str, Link] = {}
        by_id = self._by_id
        while todo:
            for link in by_id.get(todo.pop(), ()):
                if link.t > at or link.arr > at or link.event_id in found:
                    continue
                found[link.event_id] = link
                for other in (link.alias, link.target):
                    if other not in seen:
                        seen.add(other)
                        todo.append(other)
        return sorted(found.values(), key=lambda k: (k.seen_from, k.t, k.event_id))

    def group(self, cid: str, at: int) -> Group:
        """``cid``'s group as a deadline ``at`` sees it (see the module docstring)."""
        if cid not in self._by_id:
            return NO_GROUP
        active, refused = self._apply(self._visible(cid, at))
        members = _component(cid, active)
        members.pop(cid, None)
        return Group(members, refused)

    def verdict(self, link: Link) -> str | None:
        """Why ``link`` is refused (None: taken), as the first deadline that sees it does.
        Final once every link read in time for that deadline is in the book."""
        _active, refused = self._apply(self._visible(link.alias, link.seen_from))
        return refused.get(link.event_id)

    def _apply(
        self, links: list[Link], ever: dict[frozenset[str], Link] | None = None
    ) -> tuple[dict[frozenset[str], Link], dict[str, str]]:
        """Apply ``links`` in order: the links in force after them, and why each refused
        one was; ``ever`` collects every link that was in force at some point."""
        active: dict[frozenset[str], Link] = {}
        refused: dict[str, str] = {}
        for link in links:
            pair = frozenset((link.alias, link.target))
            if link.unlink:
                if active.pop(pair, None) is None:
                    refused[link.event_id] = (
                        f"unlink of {link.alias} from {link.target} at {human(link.t)}: "
                        "they are not linked then"
                    )
                continue
            if pair in active:
                continue  # said again: the link in force stays
            if link.alias == link.target:
                refused[link.event_id] = f"link of {link.alias} to itself"
                continue
            mine = _component(link.alias, active)
            if link.target in mine:
                path = " -> ".join(_path(link.alias, link.target, active))
                refused[link.event_id] = (
                    f"link of {link.alias} to {link.target} at {human(link.t)} would make a "
                    f"cycle: they are one group already ({path})"
                )
                continue
            theirs = _component(link.target, active)
            size = len(mine) + len(theirs)
            if size > self.max_group:
                refused[link.event_id] = (
                    f"link of {link.alias} to {link.target} at {human(link.t)} would make a "
                    f"group of {size} ids (links.max_group {self.max_group}): a shared "
                    "device or a test id?"
                )
                continue
            active[pair] = link
            if ever is not None:
                ever[pair] = link
        return active, refused

    def rows(self) -> list[list[Any]]:
        return [k.row() for k in self.links.values()]


def _component(cid: str, active: dict[frozenset[str], Link]) -> dict[str, Link]:
    """Ids joined to ``cid`` by ``active`` links -> the link (latest on the path) that
    joined them; ``cid`` itself maps to a placeholder."""
    adj: dict[str, list[tuple[str, Link]]] = {}
    for pair, link in active.items():
        a, b = tuple(pair)
        adj.setdefault(a, []).append((b, link))
        adj.setdefault(b, []).append((a, link))
    root = Link("", cid, cid, NEVER)
    out = {cid: root}
    todo = [cid]
    while todo:
        cur = todo.pop()
        for other, link in adj.get(cur, ()):
            if other not in out:
                via = out[cur]
                out[other] = link if via is root or link.t >= via.t else via
                todo.append(other)
    return out


def _path(a: str, b: str, active: dict[frozenset[str], Link]) -> list[str]:
    """The ids from ``a`` to ``b`` through active links (for a refusal's reason)."""
    adj: dict[str, list[str]] = {}
    for pair in active:
        x, y = tuple(pair)
        adj.setdefault(x, []).append(y)
        adj.setdefault(y, []).append(x)
    prev: dict[str, str] = {a: a}
    todo = [a]
    while todo and b not in prev:
        cur = todo.pop(0)
        for nxt in sorted(adj.get(cur, ())):
            if nxt not in prev:
                prev[nxt] = cur
                todo.append(nxt)
    path = [b]
    while path[-1] != a and path[-1] in prev:
        path.append(prev[path[-1]])
    return path[::-1]


# ------------------------------------------------------------ facts on their way to a group


def fact_row(fact: StateFact) -> list[Any]:
    """A fact as it travels to another partition (times and arrival unchanged)."""
    if isinstance(fact, PurchaseFact):
        return ["p", fact.event_id, fact.t, fact.arr, fact.rt, fact.order_id, fact.items]
    if isinstance(fact, ReturnFact):
        return ["r", fact.event_id, fact.t, fact.arr, fact.rt, fact.order_id, fact.items]
    if isinstance(fact, SessionFact):
        return ["s", fact.event_id, fact.t, fact.arr, fact.rt, fact.tz]
    return ["c", fact.event_id, fact.t, fact.arr, fact.rt, fact.channel, fact.withdrawn]


def fact_of(r: list[Any]) -> StateFact:
    kind, eid, t, arr, rt = r[0], str(r[1]), int(r[2]), int(r[3]), int(r[4])
    if kind in ("p", "r"):
        items = tuple((str(s), int(q)) for s, q in r[6])
        cls = PurchaseFact if kind == "p" else ReturnFact
        return cls(eid, t, str(r[5]), items, arr, rt)
    if kind == "s":
        return SessionFact(eid, t, arr, rt, None if r[5] is None else str(r[5]))
    if kind == "c":
        return ConsentFact(eid, t, str(r[5]), bool(r[6]), arr, rt)
    raise ValueError(f"unknown fact kind {kind!r}")


FACT_TOPIC = {PurchaseFact: "purchases", ReturnFact: "returns", SessionFact: "sessions",
              ConsentFact: "consents"}  # fmt: skip
