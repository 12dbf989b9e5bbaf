# ruff: noqa: E501  (the page template is HTML, CSS and JavaScript)
"""What an offline replay found, as one self-contained HTML file, and policy diffs.

``replay FILE --offline --report report.html`` collects every decision (with
reason and evidence) and late finding through ``replay_offline``'s output hook
and writes a page that opens with no network: totals, suppressions per rule
and trigger, the suppression rate over event time as an inline SVG chart,
late evidence and the setting that would have caught it, examples per rule,
and with ``--truth`` precision and recall per rule with the misses listed.
``--against B.toml`` replays the same file under a second policy and lists
every message whose decision changes, and why.
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from streams.core.campaigns import Order, Trip, label_of
from streams.core.clock import human_span, iso
from streams.core.linking import LINKED
from streams.core.outcomes import Decided, Failed, LateFinding, Output, Refused
from streams.core.policy import Policy
from streams.core.policy_history import PolicyHistory
from streams.core.rules import evidence_json
from streams.offline.replay import ReplaySummary, replay_offline

DAY = 86_400_000
HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class Seen:
    """One decision as the report needs it."""

    message_id: str
    customer_id: str
    trigger: str
    created_at: int
    action: str
    rule: str | None
    reason: str | None
    evidence: tuple[tuple[str, str, int], ...]
    policy: str
    held_for: str = ""  # quiet_hours, cap: held past its own deadline


@dataclass
class Collected:
    decisions: list[Seen] = field(default_factory=list)  # a repeated id is decided again
    late: list[LateFinding] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)  # identity links dead-lettered
    blast: bool = False  # [blast] on: keep each candidate's campaign and content
    contents: list[tuple[str, int, str]] = field(default_factory=list)  # campaign, time, SKUs

    def __call__(self, o: Output) -> None:
        if isinstance(o, Decided):
            c, d = o.candidate, o.decision
            self.decisions.append(
                Seen(c.message_id, c.customer_id, c.trigger, c.created_at, d.action, d.rule,
                     d.reason, tuple(d.evidence), o.policy, c.held_for),
            )  # fmt: skip
            if self.blast:
                skus = ",".join(sorted(set(d.skus or ())))
                self.contents.append((c.campaign, c.created_at, skus))
        elif isinstance(o, LateFinding):
            self.late.append(o)
        elif isinstance(o, Refused):
            self.refused.append(o)
        else:
            self.failed.append(o)


def collect(
    path: str | Path,
    policy: Policy,
    partitions: int,
    history: PolicyHistory | None = None,
    out: IO[bytes] | None = None,
    late_out: IO[bytes] | None = None,
    orders: Iterable[Order] = (),
) -> tuple[Collected, ReplaySummary]:
    """``out``/``late_out``: also write the decisions and late findings, as a replay
    without a report does, so that one pass gives both the report and the files."""
    got = Collected(blast=policy.blast.enabled)
    summary = replay_offline(path, policy, out, None, late_out, partitions, history=history,
                             on_output=got, orders=orders)  # fmt: skip
    return got, summary


# ---------------------------------------------------------------- truth


Verdicts = dict[str, Counter[tuple[str, str | None]]]
"""message_id -> how many times it got each (action, rule): a retried id is decided twice."""


def read_truth(path: str | Path) -> Verdicts:
    """The offline decision format, one JSON object a line (``message_id``, ``action``,
    ``rule``); other fields (why the truth says so) are for people."""
    out: Verdicts = defaultdict(Counter)
    with open(path, "rb") as fh:
        for line in fh:
            if line.strip():
                d = orjson.loads(line)
                out[d["message_id"]][(d["action"], d.get("rule"))] += 1
    return dict(out)


def verdicts(decisions: Iterable[Seen]) -> Verdicts:
    out: Verdicts = defaultdict(Counter)
    for d in decisions:
        out[d.message_id][(d.action, d.rule)] += 1
    return dict(out)


@dataclass(frozen=True, slots=True)
class Accuracy:
    rule: str
    tp: int
    fp: int
    fn: int
    false_positives: tuple[str, ...]
    misses: tuple[str, ...]

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def accuracy(decided: Verdicts, truth: Verdicts) -> list[Accuracy]:
    """Per rule: a decision by rule R that the truth also gives the message is a true
    positive; R where the truth says otherwise a false positive; a truth R the replay did
    not give a miss (a message in the truth and never decided: a miss)."""
    rules = {r for v in (*decided.values(), *truth.values()) for _a, r in v if r}
    out = []
    for rule in sorted(rules):
        tp = fp = fn = 0
        fps: list[str] = []
        misses: list[str] = []
        for mid in sorted(set(decided) | set(truth)):
            got = sum(n for (_a, r), n in decided.get(mid, Counter()).items() if r == rule)
            want = sum(n for (_a, r), n in truth.get(mid, Counter()).items() if r == rule)
            tp += min(got, want)
            if got > want:
                fp += got - want
                fps.append(mid)
            elif want > got:
                fn += want - got
                misses.append(mid)
        out.append(Accuracy(rule, tp, fp, fn, tuple(fps), tuple(misses)))
    return out


# ---------------------------------------------------------------- the page


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _rate_chart(decisions: Iterable[Seen], trips: Iterable[Trip] = ()) -> dict[str, Any]:
    rows = list(decisions)
    if not rows:
        return {"labels": [], "rates": [], "totals": [], "trips": []}
    lo = min(d.created_at for d in rows)
    hi = max(d.created_at for d in rows)
    size = DAY if hi - lo > 3 * DAY else HOUR
    n = int((hi - lo) // size) + 1
    total, supp = [0] * n, [0] * n
    for d in rows:
        i = int((d.created_at - lo) // size)
        total[i] += 1
        supp[i] += d.action == "suppress"
    labels = [iso(lo // size * size + i * size)[: 10 if size == DAY else 13] for i in range(n)]
    return {
        "labels": labels,
        "rates": [round(s / t, 4) if t else 0 for s, t in zip(supp, total, strict=True)],
        "totals": total,
        # campaign trips, as fractional bucket positions, drawn as marks on the chart
        "trips": [[round((t.at_ms - lo) / size, 3), f"{t.campaign} tripped ({t.kind})"]
                  for t in trips],
    }  # fmt: skip


def _holds_html(ds: list[Seen]) -> str:
    """Quiet-hour holds and deferrals by how they ended, and suppressions per cap."""
    held: Counter[tuple[str, str]] = Counter()
    per_cap: Counter[tuple[str, str]] = Counter()
    for d in ds:
        if d.held_for:
            held[(d.held_for, d.rule or d.action)] += 1
        if d.rule in ("cap_exceeded", "cap_deferred_expired") and d.reason:
            per_cap[(d.reason.partition(":")[0].removeprefix("cap "), d.rule)] += 1
    if not held and not per_cap:
        return ""
    rows = "".join(
        f"<tr><td>{_e(why)}</td><td>{_e(end)}</td><td class=n>{n}</td></tr>"
        for (why, end), n in sorted(held.items())
    )
    caps = "".join(
        f"<tr><td>{_e(cap)}</td><td>{_e(rule)}</td><td class=n>{n}</td></tr>"
        for (cap, rule), n in sorted(per_cap.items())
    )
    return (
        "<h2>Held past their deadline</h2><table id=holds><thead><tr><th>held for</th>"
        f"<th>then</th><th>messages</th></tr></thead><tbody>{rows}</tbody></table>"
        "<h3>Suppressions per cap</h3><table id=caps><thead><tr><th>cap</th><th>rule</th>"
        f"<th>messages</th></tr></thead><tbody>{caps}</tbody></table>"
    )


def _links_html(ds: list[Seen], refused: list[Refused]) -> str:
    """Suppressions and rewrites that only an identity link made possible (their reason
    names the linked id the evidence came from), and the links refused."""
    linked = [d for d in ds if d.action != "send" and d.reason and LINKED in d.reason]
    if not linked and not refused:
        return ""
    per_rule = Counter(d.rule for d in linked)
    rows = "".join(f"<tr><td>{_e(r or '')}</td><td class=n>{n}</td></tr>"
                   for r, n in per_rule.most_common())  # fmt: skip
    examples = "".join(
        f"<tr><td>{_e(d.message_id)}</td><td>{_e(d.customer_id)}</td><td>{_e(d.reason or '')}</td>"
        "</tr>"
        for d in linked[:10]
    )
    bad = "".join(f"<tr><td>{_e(o.link.event_id)}</td><td>{_e(o.error)}</td></tr>"
                  for o in refused[:20])  # fmt: skip
    return (
        f"<h2>Made possible by identity links</h2><p>{len(linked)} suppressions or rewrites "
        "used evidence of a linked id (a guest checkout, a second device); "
        f"{len(refused)} links were refused (dead-letter).</p>"
        "<table id=linked><thead><tr><th>rule</th><th>messages</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        "<table id=linked-examples><thead><tr><th>message</th><th>customer</th><th>reason</th>"
        f"</tr></thead><tbody>{examples}</tbody></table>"
        "<table id=refused-links><thead><tr><th>link</th><th>refused because</th></tr></thead>"
        f"<tbody>{bad}</tbody></table>"
    )


def _trips_html(trips: list[Trip], contents: list[tuple[str, int, str]], window: int) -> str:
    """Each trip, and its campaign's windows: candidates and the tripping content's share
    (the content as sent, after rewrites), so ops see the fallback set in."""
    if not trips:
        return ""
    rows = "".join(
        f"<tr data-campaign='{_e(t.campaign)}'><td>{_e(t.campaign)}</td><td>{iso(t.at_ms)}</td>"
        f"<td>{t.kind}</td><td>{_e(label_of(t.fingerprint))}</td><td class=n>{t.share:.0%}</td>"
        f"<td class=n>{t.count}</td><td class=n>{t.held}</td><td>{_e(t.summary())}</td></tr>"
        for t in trips
    )
    out = [
        "<h2>Campaign trips</h2><table id=trips><thead><tr><th>campaign</th><th>tripped at</th>"
        "<th>on</th><th>top content</th><th>share</th><th>in window</th><th>held</th>"
        f"<th>why</th></tr></thead><tbody>{rows}</tbody></table>"
    ]
    step = max(1, window // 5)  # five steps a window: the share's rise shows
    for t in {t.campaign: t for t in trips}.values():
        top = label_of(t.fingerprint)
        per: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for camp, at, skus in contents:
            if camp == t.campaign:
                w = per[at - at % step]
                w[0] += 1
                w[1] += bool(top) and _label_of_skus(skus) == top
        lines = "".join(
            f"<tr><td>{iso(w)}</td><td class=n>{n}</td>"
            f"<td class=n>{f'{same / n:.0%}' if top else '-'}</td></tr>"
            for w, (n, same) in sorted(per.items())
        )
        what = f"share of [{_e(top)}]" if top else "candidates"
        out.append(
            f"<h3>{_e(t.campaign)}: {what} every {human_span(step)}</h3><table class=shares>"
            f"<thead><tr><th>from</th><th>candidates</th><th>share</th></tr></thead>"
            f"<tbody>{lines}</tbody></table>"
        )
    return "".join(out)


def _label_of_skus(skus: str) -> str:
    s = skus.split(",") if skus else []
    head = ",".join(s[:3])
    return head if len(s) <= 3 else f"{head},+{len(s) - 3}"


def _late_rows(late: list[LateFinding], policy: Policy) -> list[str]:
    by: dict[tuple[str, str], list[LateFinding]] = defaultdict(list)
    for f in late:
        by[(f.rule, f.event[0])].append(f)
    rows = []
    for (rule, topic), fs in sorted(by.items()):
        settle = [f.late_by_ms for f in fs if f.late_by_ms > 0]
        lateness = [f.behind_ms for f in fs if f.late_by_ms <= 0]
        fixes = []
        if settle:
            fixes.append(f"a settle delay longer by {human_span(max(settle))} ({len(settle)})")
        if lateness:
            cur = policy.time.allowed_lateness.for_topic(topic)
            need = max(lateness)
            fixes.append(
                f"time.allowed_lateness.{topic} = {human_span(need)} (now {human_span(cur)}; "
                f"{len(lateness)})"
            )
        rows.append(
            f"<tr><td>{_e(rule)}</td><td>{_e(topic)}</td><td class=n>{len(fs)}</td>"
            f"<td>{_e('; '.join(fixes))}</td></tr>"
        )
    return rows


def render(
    title: str,
    got: Collected,
    summary: ReplaySummary,
    policy: Policy,
    truth: Verdicts | None = None,
) -> str:
    ds = got.decisions
    actions = Counter(d.action for d in ds)
    rules = Counter(d.rule for d in ds if d.rule)
    by_trigger: dict[str, Counter[str]] = defaultdict(Counter)
    for d in ds:
        by_trigger[d.trigger][d.action] += 1
    rule_rows = "".join(
        f"<tr data-rule='{_e(r)}'><td>{_e(r)}</td><td class=n>{n}</td></tr>"
        for r, n in rules.most_common()
    )
    trig_rows = "".join(
        f"<tr><td>{_e(t)}</td><td class=n>{sum(c.values())}</td><td class=n>{c['send']}</td>"
        f"<td class=n>{c['rewrite']}</td><td class=n>{c['suppress']}</td></tr>"
        for t, c in sorted(by_trigger.items())
    )
    ex_html = _examples(ds)
    acc_html = "" if truth is None else _accuracy_table(ds, truth)
    late_rows = _late_rows(got.late, policy)
    chart = orjson.dumps(_rate_chart(ds, summary.trips)).decode()
    trips = _holds_html(ds) + _trips_html(summary.trips, got.contents, policy.blast.window)
    trips += _links_html(ds, got.refused)
    total = len(ds)
    rate = actions["suppress"] / total if total else 0.0
    return PAGE.format(
        title=_e(title),
        policy=_e(policy.version),
        records=summary.records,
        decisions=total,
        send=actions["send"],
        rewrite=actions["rewrite"],
        suppress=actions["suppress"],
        rate=f"{rate:.1%}",
        late=len(got.late),
        failed=len(got.failed) + len(summary.bad_lines) + len(summary.unreadable),
        rule_rows=rule_rows,
        trig_rows=trig_rows,
        late_rows="".join(late_rows) or "<tr><td colspan=4>none</td></tr>",
        examples="".join(ex_html),
        accuracy=acc_html,
        chart=chart,
        trips=trips,
    )


def _examples(ds: list[Seen]) -> list[str]:
    """Up to three messages per rule, the earliest first, with reason and evidence."""
    examples: dict[str, list[Seen]] = defaultdict(list)
    for d in sorted(ds, key=lambda d: d.created_at):
        if d.rule and len(examples[d.rule]) < 3:
            examples[d.rule].append(d)
    ex_html = []
    for r, items in sorted(examples.items()):
        ex_html.append(f"<h3>{_e(r)}</h3><ul>")
        for d in items:
            ev = "; ".join(f"{e['topic']} {e['event_id']} at {e['occurred_at']}"
                           for e in evidence_json(d.evidence))  # fmt: skip
            ex_html.append(
                f"<li><b>{_e(d.message_id)}</b> ({_e(d.trigger)} to {_e(d.customer_id)}, "
                f"{_e(iso(d.created_at))}): {_e(d.reason)}"
                + (f"<br><span class=muted>evidence: {_e(ev)}</span>" if ev else "")
                + "</li>"
            )
        ex_html.append("</ul>")
    return ex_html


def _accuracy_table(ds: list[Seen], truth: Verdicts) -> str:
    """Precision and recall per rule against a ground truth, with the messages missed
    and wrongly stopped."""
    rows = []
    for a in accuracy(verdicts(ds), truth):
        miss = ", ".join(a.misses[:20]) + (" ..." if len(a.misses) > 20 else "")
        fp = ", ".join(a.false_positives[:20])
        rows.append(
            f"<tr data-rule='{_e(a.rule)}'><td>{_e(a.rule)}</td><td class=n>{a.tp}</td>"
            f"<td class=n>{a.fp}</td><td class=n>{a.fn}</td>"
            f"<td class='n precision'>{a.precision:.3f}</td><td class='n recall'>{a.recall:.3f}</td>"
            f"<td>{_e(miss)}</td><td>{_e(fp)}</td></tr>"
        )
    return (
        "<h2>Against the ground truth</h2><table id=accuracy><thead><tr><th>rule</th>"
        "<th>true pos.</th><th>false pos.</th><th>missed</th><th>precision</th>"
        "<th>recall</th><th>missed messages</th><th>false positives</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>trigger-sanity replay: {title}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222;max-width:1200px}}
h1{{font-size:20px}} h2{{font-size:16px;margin-top:24px}} h3{{font-size:14px;margin:10px 0 4px}}
table{{border-collapse:collapse;margin:6px 0}} td,th{{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}}
th{{background:#f2f2f2}} td.n{{text-align:right}} .muted{{color:#777}}
.cards{{display:flex;gap:10px;flex-wrap:wrap}} .card{{border:1px solid #ddd;border-radius:6px;padding:6px 12px}} .card b{{display:block;font-size:20px}}
svg{{border:1px solid #ddd;background:#fff}}
</style></head><body>
<h1>Replay of {title} <span class=muted>policy {policy}</span></h1>
<div class=cards>
<div class=card>records<b id=records>{records}</b></div>
<div class=card>decisions<b id=decisions>{decisions}</b></div>
<div class=card>sent<b id=send>{send}</b></div>
<div class=card>rewritten<b id=rewrite>{rewrite}</b></div>
<div class=card>suppressed<b id=suppress>{suppress}</b></div>
<div class=card>suppression rate<b id=rate>{rate}</b></div>
<div class=card>late evidence<b id=late>{late}</b></div>
<div class=card>unreadable / failed<b id=failed>{failed}</b></div>
</div>
<h2>Suppression rate over event time</h2>
<svg id=chart width="1000" height="240" role="img" aria-label="suppression rate over event time"></svg>
<h2>Suppressions and rewrites per rule</h2>
<table id=rules><thead><tr><th>rule</th><th>messages</th></tr></thead><tbody>{rule_rows}</tbody></table>
<h2>Per trigger</h2>
<table id=triggers><thead><tr><th>trigger</th><th>decided</th><th>sent</th><th>rewritten</th><th>suppressed</th></tr></thead><tbody>{trig_rows}</tbody></table>
{trips}
{accuracy}
<h2>Late evidence, and what setting would have caught it</h2>
<table id=late-table><thead><tr><th>rule</th><th>event topic</th><th>events</th><th>would have been caught by</th></tr></thead><tbody>{late_rows}</tbody></table>
<h2>Examples per rule</h2>
{examples}
<script>
"use strict";
const data={chart};
const svg=document.getElementById("chart"),NS="http://www.w3.org/2000/svg",W=1000,H=200,n=data.labels.length;
function add(tag,attrs,text){{const e=document.createElementNS(NS,tag);for(const k in attrs)e.setAttribute(k,attrs[k]);if(text!==undefined)e.textContent=text;svg.appendChild(e);return e;}}
if(n>0){{
  const bw=W/n;let pts=[];
  for(let i=0;i<n;i++){{const x=i*bw+bw/2,y=H-data.rates[i]*(H-10);pts.push(x+","+y);
    const c=add("circle",{{cx:x,cy:y,r:3,fill:"#e5533d","data-rate":data.rates[i]}});
    const t=document.createElementNS(NS,"title");t.textContent=data.labels[i]+": "+(data.rates[i]*100).toFixed(1)+"% of "+data.totals[i];c.appendChild(t);}}
  add("polyline",{{points:pts.join(" "),fill:"none",stroke:"#e5533d","stroke-width":2}});
  for(const [x,label] of data.trips){{const lx=x*bw+bw/2;
    const l=add("line",{{x1:lx,x2:lx,y1:0,y2:H,stroke:"#7a3ee0","stroke-dasharray":"4 3",class:"trip"}});
    const t=document.createElementNS(NS,"title");t.textContent=label;l.appendChild(t);}}
  const step=Math.max(1,Math.ceil(n/10));
  for(let i=0;i<n;i+=step)add("text",{{x:i*bw,y:H+15,"font-size":11}},data.labels[i]);
  for(const f of [0,0.5,1])add("text",{{x:2,y:H-f*(H-10)-2,"font-size":10,fill:"#777"}},(f*100)+"%");
}}
window.__rendered=n;
</script></body></html>
"""


# ---------------------------------------------------------------- compare


@dataclass(frozen=True, slots=True)
class Change:
    message_id: str
    customer_id: str
    trigger: str
    before: tuple[str, str | None]
    after: tuple[str, str | None]
    why: str | None


def compare(a: Collected, b: Collected) -> list[Change]:
    """Every decision that differs, pairing the copies of a repeated id in order."""
    by_a: dict[str, list[Seen]] = defaultdict(list)
    by_b: dict[str, list[Seen]] = defaultdict(list)
    for d in a.decisions:
        by_a[d.message_id].append(d)
    for d in b.decisions:
        by_b[d.message_id].append(d)
    changes = []
    for mid in sorted(set(by_a) | set(by_b)):
        xs, ys = by_a.get(mid, []), by_b.get(mid, [])
        for i in range(max(len(xs), len(ys))):
            x = xs[i] if i < len(xs) else None
            y = ys[i] if i < len(ys) else None
            before = (x.action, x.rule) if x else ("not decided", None)
            after = (y.action, y.rule) if y else ("not decided", None)
            if before != after:
                ref = y or x
                assert ref is not None
                why = (y.reason if y and y.rule else x.reason if x else None) or None
                changes.append(Change(mid, ref.customer_id, ref.trigger, before, after, why))
    return changes


def diff_summary(changes: list[Change], a: str, b: str) -> str:
    moves = Counter((c.before, c.after) for c in changes)
    lines = [f"{len(changes)} message(s) decided differently under {b} than under {a}:"]
    for (before, after), n in moves.most_common():
        lines.append(f"  {n:>6}  {_d(before)} -> {_d(after)}")
    return "\n".join(lines)


def _d(x: tuple[str, str | None]) -> str:
    return f"{x[0]} ({x[1]})" if x[1] else x[0]


def render_diff(changes: list[Change], a: str, b: str, title: str) -> str:
    moves = Counter((c.before, c.after) for c in changes)
    move_rows = "".join(
        f"<tr><td>{_e(_d(k[0]))}</td><td>{_e(_d(k[1]))}</td><td class=n>{n}</td></tr>"
        for k, n in moves.most_common()
    )
    rows = "".join(
        f"<tr><td>{_e(c.message_id)}</td><td>{_e(c.customer_id)}</td><td>{_e(c.trigger)}</td>"
        f"<td>{_e(_d(c.before))}</td><td>{_e(_d(c.after))}</td><td>{_e(c.why or '')}</td></tr>"
        for c in changes
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>trigger-sanity: {_e(a)} vs {_e(b)}</title><style>
body{{font:14px/1.4 system-ui,sans-serif;margin:20px;color:#222}} table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #eee;padding:3px 8px;text-align:left;vertical-align:top}} th{{background:#f2f2f2}} td.n{{text-align:right}}
</style></head><body><h1>{_e(title)}: policy {_e(a)} vs {_e(b)}</h1>
<p id=count>{len(changes)} message(s) decided differently.</p>
<h2>Counts per change</h2><table id=moves><thead><tr><th>under {_e(a)}</th><th>under {_e(b)}</th><th>messages</th></tr></thead><tbody>{move_rows}</tbody></table>
<h2>Every message that changes</h2><table id=changes><thead><tr><th>message</th><th>customer</th><th>trigger</th><th>{_e(a)}</th><th>{_e(b)}</th><th>why</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""
