"""The decision engine: holds candidates, decides them in deadline order.

Pure: no Kafka, no asyncio, no wall clock of its own. The worker and the
offline replay feed it the same way (``ingest`` a record, ``release`` what
stream time allows) and get the same decisions; only *when* a decision is
made differs, never *what* it is:

- a candidate is decided only once every stream of its partition has moved
  past its deadline, so every event that arrived in time is in state;
- what a decision may see is fixed by the streams alone (``rules.View``):
  events read after their stream passed the deadline are late, messages read
  after it are not its history, and nothing older than what pruning may have
  removed counts. Pruning, sweeps and the order the consumer interleaves
  topics in therefore never change a decision.

Held candidates live inside the customer's state (so they are as durable as
the store: a changelogged table in the worker); the per-partition heap that
orders them is an index rebuilt by ``restore`` after a restart.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from streams.core import rules
from streams.core.campaigns import Order
from streams.core.candidate import Candidate, content_key
from streams.core.clock import NEVER, Source, StreamClock
from streams.core.gate import DECIDE, FOREVER, CampaignGate, Count
from streams.core.gating import Gating
from streams.core.holding import Holding
from streams.core.identity import Link, LinkBook
from streams.core.late import LateChecks
from streams.core.linking import Forward, Linking, name_linked
from streams.core.outbox import Outbox
from streams.core.outcomes import Decided, Failed, Output
from streams.core.partitioning import partition_for
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.pruning import Partition
from streams.core.quiet_hold import QuietHold
from streams.core.restoring import Restoring
from streams.core.state import (
    NO_HORIZON,
    Caps,
    ConsentFact,
    CustomerState,
    Horizons,
    PurchaseFact,
    ReturnFact,
    SentFact,
    SessionFact,
    trim_late_only,
)
from streams.core.store import StateStore, held_of
from streams.core.vocabulary import INPUT_KINDS, LIFTABLE, STRIPPING

StateFact = PurchaseFact | ReturnFact | SessionFact | ConsentFact
Fact = StateFact | Candidate | Link | None


class Engine(Holding, Gating, Linking):
    def __init__(
        self,
        policy: Policy,
        store: StateStore,
        partitions: int = 1,
        rerouted: bool = False,
        history: PolicyHistory | None = None,
        outbox: Outbox | None = None,
        orders: Iterable[Order] = (),
        replicas: bool = False,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        """``rerouted``: records may reach a partition through the re-route topic, so each
        partition's stream time also waits for every other partition's progress markers.
        ``history``: versions applied live (its base must be ``policy``). ``outbox``
        (worker): outputs are rendered and kept in the customer's state until delivered.
        ``orders``: campaign commands from ops (with ``[blast]`` on, see ``gate``).
        ``replicas``: a campaign gate replica per partition even without re-routing
        (tests of the worker's way offline; the worker's engine is ``rerouted``).
        ``partition_of``: a customer's partition (murmur2 of its id by default)."""
        self.policy = policy
        self.store = store
        self.partitions = partitions
        self.rerouted = rerouted and partitions > 1
        self.counts: Counter[str] = Counter()
        self.partition_of = partition_of or (lambda cid: partition_for(cid, partitions))
        # identity links (``linking``): the whole book, what to send to other partitions,
        # and (live) whether decisions wait for every partition to acknowledge a link
        self.book = LinkBook(policy.links.max_group)
        self.forwards: list[Forward] = []
        self.acked_links = False
        self._judged: list[tuple[Partition, tuple[int, str, int]]] | None = None
        self._forwards_at = 0
        self._shadow_keys: dict[tuple[str, int], str] = {}
        self._parts: dict[int, Partition] = {}
        # heap entries popped since begin(): pushed back by rollback() (worker transactions)
        self._popped: list[tuple[int, tuple[int, str, int, str]]] | None = None
        self._unsent: dict[int, int] = {}  # partition -> gate entries not sent at begin()
        self._sent: list[tuple[Partition, list[Count], int]] | None = None
        self._lateness = {k: policy.time.allowed_lateness.for_topic(k) for k in INPUT_KINDS}
        self._max_settle = policy.max_settle
        # Sends are looked at by duplicate_content and frequency_cap (and by late-evidence
        # checks, which therefore reach back as far as these windows and no further).
        self._send_window = max(
            policy.rules.duplicate_content.window,
            policy.rules.frequency_cap.window,
            *(c.window for c in policy.caps),
        )
        self.outbox = outbox
        st = policy.state
        self._ttl = st.customer_ttl
        self._caps = Caps(st.max_events, st.max_sends, st.max_message_ids, st.max_orders)
        # How far below the horizons' base each kind is kept (see _horizons): a fact added
        # at ``t`` can be pruned once the base passes ``t`` plus its kind's window.
        self._late_only = self._max_settle + self._send_window  # see trim_late_only
        self._keep = Horizons(
            events=st.retention,
            sends=self._send_window,
            ids=policy.rules.duplicate_message.retention,
            orders=st.order_retention,
            epochs=self._ttl,
            at=0,
        )
        # Versions applied live (policy_history): each candidate is decided by the one in
        # force at its created_at. ``policy`` stays the base: what shapes state and timing.
        self.history = history if history is not None else PolicyHistory(policy)
        self._late = LateChecks(policy, self.history, self._send_window)
        self._plans: dict[tuple[int, str, bool], rules.Plan] = {}
        # [blast]: candidates are decided in one order over all partitions (see gate):
        # by one gate of every partition, or (live, partitions on several workers) by a
        # replica in each partition fed through the re-route topic
        self.orders = list(orders)
        self._blast = policy.blast.enabled
        self.replicated = self._blast and (self.rerouted or replicas)
        self.gate = (
            CampaignGate(policy.blast, self.orders) if self._blast and not self.replicated else None
        )
        qh = policy.quiet_hours
        self.quiet = QuietHold(qh) if qh.channels else None
        self._defers = any(c.overflow == "defer" for c in policy.caps)
        # how far past its own deadline a candidate can be held (quiet hours, deferrals):
        # what it may see and what pruning keeps reach back that much further
        self._longest_hold = policy.longest_hold

    def _plan(self, policy: Policy, cand: Candidate) -> rules.Plan:
        key = (id(policy), cand.trigger, cand.is_marketing)  # policies live in the history
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = rules.plan(policy, cand.trigger, cand.is_marketing)
        return found

    # ------------------------------------------------------------ partitions

    def _partition_index(self, part: Partition) -> int:
        return next(p for p, v in self._parts.items() if v is part)

    def part(self, partition: int) -> Partition:
        p = self._parts.get(partition)
        if p is None:
            remote: tuple[Source, ...] = ()
            if self.rerouted:
                remote = tuple(
                    (k, s) for s in range(self.partitions) if s != partition for k in INPUT_KINDS
                )
            gate = self.gate
            if self.replicated:
                gate = CampaignGate(self.policy.blast, self.orders, sources=self.partitions)
            clock = StreamClock(INPUT_KINDS, self._lateness, remote)
            p = self._parts[partition] = Partition(clock, gate)
        return p

    def begin(self) -> None:
        """Start a unit of work whose heap changes ``rollback`` can undo (the store's
        own transaction undoes the state), gate entries not yet sent included."""
        self._popped = []
        self._sent = []
        self._judged = []
        self._forwards_at = len(self.forwards)
        if self.replicated:  # per record: nothing to note without campaign replicas
            self._unsent = {p: len(pt.outgoing) for p, pt in self._parts.items() if pt.outgoing}

    def commit(self) -> None:
        self._popped = None
        self._sent = None
        self._judged = None

    def rollback(self) -> None:
        for partition, entry in self._popped or ():
            heapq.heappush(self.part(partition).heap, entry)
        for part, judged in self._judged or ():
            heapq.heappush(part.judging, judged)  # its refusal was never written
            part.link_rows.pop(judged[1], None)
        del self.forwards[self._forwards_at :]
        self._judged = None
        for part, counts, told in reversed(self._sent or ()):
            part.outgoing[:0] = counts  # handed out, never written: send them again
            part.told = told
        if self.replicated:
            for p, part in self._parts.items():
                del part.outgoing[self._unsent.get(p, 0) :]  # entries of undone gatings
        self._popped = None
        self._sent = None

    def clock(self, partition: int) -> StreamClock:
        return self.part(partition).clock

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the in-memory index of partitions this worker no longer owns."""
        for p in partitions:
            self._parts.pop(p, None)

    def held_count(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self.part(partition).heap)
        gated = sum(g.pending() for g in self._distinct_gates())
        return gated + sum(len(p.heap) for p in self._parts.values())

    def restore(
        self, partition_of: Callable[[str], int], delivered: Callable[[int], int] | None = None
    ) -> tuple[int, list[tuple[str, bytes, bytes]]]:
        """Start over after a recovery: deadline heaps rebuilt from the held candidates in
        the store. Returns the number of held candidates and the outbox entries not known
        delivered (``delivered(partition)``: newest generation known delivered there), to
        publish again: a crash between recording a decision and delivering it loses
        nothing. ``restoring`` does the same in steps, for a caller with a time budget."""
        steps = self.restoring(partition_of, delivered)
        for _ in steps.walk:
            pass
        return steps.held, steps.again

    def restoring(
        self, partition_of: Callable[[str], int], delivered: Callable[[int], int] | None = None
    ) -> Restoring:
        self._parts.clear()
        return Restoring(self, partition_of, delivered)

    def _restore_one(self, cid: str, held: Iterable[tuple[int, str, int, int]], p: int) -> int:
        part = self.part(p)
        heap = part.heap
        n = 0
        for deadline, message_id, seq, gate_at in held:
            gate = part.gate
            if gate_at and gate is not None:
                # what pruning may not pass until it is decided
                gate.keep(cid, seq, deadline)
                if not gate.knows(cid, seq):
                    self._send_again(part, cid, seq, message_id, gate_at)
            else:
                heapq.heappush(heap, (deadline, message_id, seq, cid))
            n += 1
        return n

    # ------------------------------------------------------------ input

    def ingest(
        self,
        partition: int,
        kind: str,
        customer_id: str,
        event_ms: int,
        fact: Fact,
        record_ms: int,
        source: tuple[str, int] | None = None,
        arrival: int | None = None,
    ) -> list[Output]:
        """Apply one valid input record; return late findings it reveals (if any).

        ``source`` is (the stream it was read from, its offset there), None offline.
        A record at or below the highest offset already applied for this customer
        from that stream was read again after a crash, a rebalance or a repeated
        re-route: it is skipped and counted, so a redelivery never becomes a second
        decision or a bogus ``duplicate_message``.

        ``arrival`` is the frontier of the record's own stream when it was read; the
        worker passes it for re-routed records (their stream is another partition's).
        """
        part = self.part(partition)
        clock = part.clock
        if arrival is None:
            arr = clock.frontier(kind)
            clock.observe(kind, event_ms)
        else:
            arr = arrival
            clock.observe_forwarded(event_ms)
        if fact is None:  # e.g. a session "ended": moves time, changes no fact
            return []
        if isinstance(fact, Link):
            return self._link_read(part, partition, fact, arr, source)
        state = self.store.get(customer_id) or CustomerState()
        if source is not None and self._redelivered(state, source, record_ms):
            return []
        if isinstance(fact, Candidate):
            out = self._hold(part, state, customer_id, fact, arr, source)
        else:
            out = self._add_fact(state, customer_id, kind, fact, arr, record_ms, clock, partition)
        self._outbox(state, out)
        self._prune(self._horizons(part), state)
        self.store.put(customer_id, state)
        return out

    def _redelivered(self, state: CustomerState, source: tuple[str, int], record_ms: int) -> bool:
        """Was this record of ``source`` applied to the customer already (and is it not a
        newer one from a topic created again)? Otherwise note it as applied."""
        stream, offset = source
        last_offset, newest = state.applied.get(stream, (-1, NEVER))
        if offset <= last_offset and record_ms <= newest:
            self.counts["redelivered"] += 1
            return True
        state.applied[stream] = (max(offset, last_offset), max(record_ms, newest))
        return False

    def _hold(
        self,
        part: Partition,
        state: CustomerState,
        customer_id: str,
        cand: Candidate,
        arr: int,
        source: tuple[str, int] | None,
    ) -> list[Output]:
        """Hold a candidate until stream time passes its deadline, or fail it when the
        customer's held messages are at their limit."""
        full = self._full(state, cand)
        if full is not None:
            self.counts["held_full"] += 1
            return [Failed(cand, full, source=source)]
        state.nseq += 1
        cand.seq = state.nseq
        cand.arr = arr
        state.touch(cand.created_at, self._ttl)
        self._kept(state, NEVER, False)
        state.held.append(cand)
        heapq.heappush(part.heap, (cand.deadline, cand.message_id, cand.seq, customer_id))
        self.counts["held"] += 1
        return []

    def _add_fact(
        self,
        state: CustomerState,
        customer_id: str,
        kind: str,
        fact: StateFact,
        arr: int,
        record_ms: int,
        clock: StreamClock,
        partition: int,
    ) -> list[Output]:
        """Add an event to the customer's facts; what it reveals about messages already
        decided (its own, and its group's: ``linking``) is late evidence."""
        fact.arr = arr
        fact.rt = record_ms
        if not state.add(fact, self._ttl):
            self.counts["duplicate_event"] += 1
            return []
        self._kept(state, fact.t, isinstance(fact, PurchaseFact | ReturnFact))
        if self._late.unchecked_event(fact, clock.stream_time()):
            self.counts["late_unchecked"] += 1
        if self.book.linked(customer_id):
            return self._linked_fact(state, customer_id, kind, fact, partition)
        if not (state.sent or state.suppressed):
            return []
        late: list[Output] = list(self._late.after_event(state, customer_id, kind, fact))
        self.counts["late_evidence"] += len(late)
        return late

    # ------------------------------------------------------------ release

    def release(self, partition: int, wall_ms: int) -> list[Output]:
        """Decide every held candidate that stream time allows, in deadline order."""
        part = self.part(partition)
        out: list[Output] = []
        heap, clock = part.heap, part.clock
        if part.judging:
            out.extend(self._judge(part, partition, wall_ms))
        if heap and clock.releasable(heap[0][0]):
            # Popping only raises the heap minimum: these horizons stay safe for the loop.
            horizons = self._horizons(part)
            parked = []  # linked customers' candidates waiting for links heard elsewhere
            while heap and clock.releasable(heap[0][0]):
                if not self.links_ok(part, partition, heap[0][0], heap[0][3]):
                    if self._blast:
                        break  # the campaign gate takes candidates in deadline order
                    parked.append(heapq.heappop(heap))  # the others' decisions go on
                    continue
                out.extend(self._decide_top(part, wall_ms, horizons))
            for entry in parked:
                heapq.heappush(heap, entry)
        if self.gate is not None:
            out.extend(self._pass_gate(self.gate, wall_ms, self._through()))
        return out

    def release_idle(self, partition: int, wall_ms: int) -> list[Output]:
        """All streams caught up and quiet: release by wall clock (receipt + settle).

        Stops at the first candidate not yet due, so deadline order is kept.
        """
        part = self.part(partition)
        out: list[Output] = []
        if not part.clock.all_idle:
            return out
        out.extend(self.release(partition, wall_ms))
        while part.heap and self.links_ok(part, partition, part.heap[0][0], part.heap[0][3]):
            _d, _mid, seq, cid = part.heap[0]
            cand = self._held(cid, seq)
            if cand is not None and (
                cand.received_wall + self.policy.settle.for_trigger(cand.trigger) > wall_ms
                or (cand.held_for and cand.deadline > wall_ms)  # quiet hours: not before
            ):
                break
            out.extend(self._decide_top(part, wall_ms, NO_HORIZON))
        return out

    def flush(self, wall_ms: int) -> list[Output]:
        """End of input (offline): decide everything still held, in deadline order."""
        out: list[Output] = []
        for p, part in self._parts.items():
            out.extend(self._judge(part, p, wall_ms, force=True))
            while part.heap:
                out.extend(self._decide_top(part, wall_ms, NO_HORIZON))
            if self.replicated:
                part.promised = FOREVER  # the replicas hear it with ``outgoing``
        if self.gate is not None:
            out.extend(self._pass_gate(self.gate, wall_ms, FOREVER))
        return out

    def _held(self, customer_id: str, seq: int) -> Candidate | None:
        return held_of(self.store, customer_id, seq)[1]

    def view(self, cand: Candidate) -> rules.View:
        """What ``cand`` may see (see ``rules.View``): floors from the frontier it was read
        at, which pruning can never have passed while it was still to be read."""
        # Before it was read, pruning never passed the frontier it was read at; while it is
        # held, never its deadline: nothing above the later of the two was pruned.
        base = max(cand.arr, cand.deadline) - self._max_settle - self._longest_hold
        p = self.policy
        return rules.View(
            deadline=cand.deadline,
            arrived_by=cand.deadline,
            events_from=base - p.state.retention,
            sends_from=base - self._send_window,
            ids_from=base - p.rules.duplicate_message.retention,
            orders_from=base - p.state.order_retention,
            key=(cand.deadline, cand.message_id, cand.seq),
        )

    def _decide_top(self, part: Partition, wall_ms: int, h: Horizons) -> Iterator[Output]:
        entry = heapq.heappop(part.heap)
        if self._popped is not None:
            self._popped.append((self._partition_index(part), entry))
        _deadline, _mid, seq, cid = entry
        if self.quiet is not None or self._defers:
            try:
                if self._held_on(part, entry):
                    return
            except Exception as exc:  # noqa: BLE001 - isolated, counted and dead-lettered
                yield from self._fail(cid, seq, exc)
                return
        if self._blast:
            try:
                self._enter_gate(part, entry)
            except Exception as exc:  # noqa: BLE001 - isolated, counted and dead-lettered
                yield from self._fail(cid, seq, exc)
            return
        yield from self._decide(cid, seq, wall_ms, h)

    def _decide(
        self,
        cid: str,
        seq: int,
        wall_ms: int,
        h: Horizons,
        what: int = 0,
        at: int = 0,
        gate: CampaignGate | None = None,
        entry_at: int = 0,
    ) -> Iterator[Output]:
        """Decide one held candidate; ``what``/``at``: the gate's first decision (its entry
        at ``entry_at``), or its decision again (released, killed, expired) as of ``at``."""
        state = self.store.get(cid)
        if state is None:
            return
        held = state.held
        for idx in range(len(held)):
            if held[idx].seq == seq:
                break
        else:
            return
        cand = held[idx]
        original = cand.deadline
        if gate is not None and what not in (0, DECIDE):
            orig = gate.still_held(cand.campaign, cid, seq)
            if orig is None:
                return  # decided already (released or killed before it expired)
            original = orig
        held.pop(idx)
        policy = self.history.at(cand.created_at)
        view = self.view(cand)
        if at:
            # decided again as of ``at``: what happened meanwhile counts (floors unchanged)
            cand.deadline = view.deadline = view.arrived_by = at
            view.key = (at, cand.message_id, seq)
        seen, names = self.grouped(state, cid, view.deadline, view.arrived_by)
        try:
            decision = rules.decide(seen, cand, policy, view, rules=self._plan(policy, cand))
            if names:
                decision.reason = name_linked(decision.reason, decision.evidence, names)
            if cand.held_for == "quiet_hours" and self.quiet and decision.action != "suppress":
                decision = self.quiet.expiry(cand, decision)
        except Exception as exc:  # noqa: BLE001 - isolated, counted and dead-lettered
            failed = Failed(cand, f"internal error deciding {cand.message_id}: "
                                  f"{type(exc).__name__}: {exc}")  # fmt: skip
            self.counts["failed"] += 1
            self._outbox(state, [failed])
            self.store.put(cid, state)
            if gate is not None:
                gate.done(cid, seq)
            yield failed
            return
        if gate is not None and what:
            judged = gate.judge(cand, decision, what, original, entry_at)
            if judged.decision is None:  # its campaign tripped: held until ops act or expiry
                cand.deadline = original
                held.append(cand)
                gate.hold(cand, original)
                self.counts["campaign_held"] += 1
                self.store.put(cid, state)
                return
            decision = judged.decision
            gate.release_one(cand.campaign, cid, seq)
        fact = self._remember(state, cand, decision)
        self.counts[decision.action] += 1
        if decision.rule:
            self.counts[f"rule:{decision.rule}"] += 1
        outputs: list[Output] = [Decided(cand, decision, wall_ms, policy.version)]
        if self._late.unchecked_message(fact, view.events_from):
            self.counts["late_unchecked"] += 1
        late = list(self._late.on_decision(seen, cid, fact, view.events_from))  # its group too
        self.counts["late_evidence"] += len(late)
        outputs.extend(late)
        self._outbox(state, outputs)
        self._prune(h, state)
        self.store.put(cid, state)
        yield from outputs

    def _content(
        self, state: CustomerState, cand: Candidate, policy: Policy, view: rules.View
    ) -> tuple[str, ...]:
        """The SKUs ``cand`` would send after the rewrite rules alone (none: emptied)."""
        seen, _ = self.grouped(state, cand.customer_id, view.deadline, view.arrived_by)
        d = rules.decide(seen, cand, policy, view, only=STRIPPING, rules=self._plan(policy, cand))
        return () if d.action == "suppress" else tuple(d.skus or ())

    def _remember(
        self, state: CustomerState, cand: Candidate, decision: rules.Decision
    ) -> SentFact:
        """Record a decision in the customer's state: its id (for duplicates), and the
        message as sent, or as suppressed by a rule a late event could lift."""
        first = state.decided.get(cand.message_id)
        if first is None or (cand.deadline, cand.seq) < (first[1], first[2]):
            # the copy first in deadline order is the one later copies are duplicates of
            state.decided[cand.message_id] = (cand.created_at, cand.deadline, cand.seq, cand.arr)
            state.due = min(state.due, cand.deadline + self._keep.ids)
        fact = SentFact(
            cand.message_id,
            cand.created_at,
            cand.deadline,
            cand.seq,
            cand.trigger,
            cand.channel,
            cand.category,
            content_key(cand.trigger, cand.channel, decision.skus, cand.payload_hash),
            decision.skus,
            cand.cart_updated_at,
            cand.order_id,
            decision.action,
            decision.rule,
            cand.arr,
        )
        if decision.action != "suppress":
            self._keep_sent(state, state.sent, fact)
        elif decision.rule in LIFTABLE:
            self._keep_sent(state, state.suppressed, fact)
        return fact

    def _keep_sent(self, state: CustomerState, kept: list[SentFact], fact: SentFact) -> None:
        kept.append(fact)
        state.due = min(state.due, fact.kept_from + self._keep.sends)
        if fact.created_at < fact.arr - self._late_only:
            trim_late_only(kept, self._late_only)

    def _outbox(self, state: CustomerState, outputs: list[Output]) -> None:
        if self.outbox is not None:
            self.outbox.add(state, outputs)
