# ruff: noqa: E501  (the page is HTML, CSS and JavaScript in one string)
"""The worker's live dashboard: one self-contained page, no network needed.

``/dashboard`` is static HTML with its own CSS and JavaScript (no CDN, no
fonts, no build step); it polls ``/dashboard/data`` every few seconds and
draws suppressions per rule over the last hour as an inline SVG chart, the
latest suppressed messages with reason and evidence, held candidates, dead
letters, late evidence and misfire warnings. Served on the worker's bind
address only (it names customers).
"""

from __future__ import annotations

from typing import Any

from streams.hints import cli

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>trigger-sanity worker</title>
<style>
 body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
 h1{font-size:18px;margin:0 0 8px} h2{font-size:15px;margin:18px 0 6px}
 .cards{display:flex;gap:10px;flex-wrap:wrap}
 .card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px}
 .card b{display:block;font-size:22px}
 .warn{background:#fff3f0;border:1px solid #e5533d;border-radius:6px;padding:6px 10px;margin:4px 0}
 table{border-collapse:collapse;background:#fff;width:100%}
 td,th{border-bottom:1px solid #eee;padding:4px 6px;text-align:left;vertical-align:top}
 th{background:#f0f0f0} .muted{color:#888} svg{background:#fff;border:1px solid #ddd}
 .legend span{display:inline-block;margin-right:12px} .sw{width:10px;height:10px;display:inline-block;margin-right:4px}
</style></head><body>
<h1>trigger-sanity worker <span class="muted" id="meta"></span></h1>
<div class="cards">
 <div class="card">decisions (1h)<b id="decisions">-</b></div>
 <div class="card">suppressed (1h)<b id="suppressed-total">-</b></div>
 <div class="card">held now<b id="held">-</b><small id="holds"></small></div>
 <div class="card">dead letters<b id="dead-letters">-</b></div>
 <div class="card">late evidence<b id="late-evidence">-</b></div>
 <div class="card">aborted transactions<b id="aborted-transactions">-</b></div>
 <div class="card">campaigns tripped<b id="campaigns-tripped">-</b></div>
 <div class="card">identity links<b id="links">-</b><span id="links-detail" class="muted"></span></div>
</div>
<h2>Tripped campaigns</h2><div id="campaigns" class="muted">none</div>
<h2>Misfire warnings</h2><div id="misfires" class="muted">none</div>
<h2>Suppressions per rule, last hour (per minute)</h2>
<svg id="chart" width="960" height="220" role="img" aria-label="suppressions per rule per minute"></svg>
<div class="legend" id="legend"></div>
<table id="rule-totals"><thead><tr><th>rule</th><th>suppressed (1h)</th></tr></thead><tbody></tbody></table>
<h2>Latest suppressed messages</h2>
<table id="latest"><thead><tr><th>decided</th><th>rule</th><th>customer</th><th>trigger</th>
<th>message</th><th>reason</th><th>evidence</th></tr></thead><tbody></tbody></table>
<script>
"use strict";
const COLORS=["#e5533d","#2f7ed8","#8bbc21","#910000","#1aadce","#492970","#f28f43","#77a1e5","#c42525","#a6c96a","#555","#d4a017"];
function el(tag,text){const e=document.createElement(tag);if(text!==undefined)e.textContent=String(text);return e;}
function render(d){
  document.getElementById("meta").textContent="policy "+d.policy+", partitions "+d.partitions.join(",")+", updated "+d.updated;
  document.getElementById("decisions").textContent=d.chart.decisions;
  document.getElementById("held").textContent=d.held;
  const h=d.holds||{};document.getElementById("holds").textContent=(h.quiet_hours||h.cap||h.campaign)?"since start: quiet hours "+(h.quiet_hours||0)+", caps "+(h.cap||0)+", campaigns "+(h.campaign||0):"";
  const lk=d.links||{};document.getElementById("links").textContent=lk.links||0;
  document.getElementById("links-detail").textContent=" unlinked "+(lk.unlinks||0)+", refused "+(lk.refused||0);
  const cs=d.campaigns||[];document.getElementById("campaigns-tripped").textContent=cs.length;
  const cd=document.getElementById("campaigns");cd.replaceChildren();cd.className=cs.length?"":"muted";
  if(!cs.length)cd.textContent="none";
  for(const c of cs){const w=el("div");w.className="warn";w.dataset.campaign=c.campaign;
    w.appendChild(el("b",c.campaign+" "+c.state));
    w.appendChild(el("div",c.state==="killed"?"killed by "+c.by+": "+c.reason:c.why+"; "+c.held+" held since "+c.message_id+" ("+c.held_here+" on this worker)"));
    const hint=el("code",c.state==="killed"?d.cli+" campaign resume "+c.campaign+' --reason "..."':d.cli+" campaign release "+c.campaign+' --reason "..."   or   '+d.cli+" campaign kill "+c.campaign+' --reason "..."');
    w.appendChild(hint);cd.appendChild(w);}
  document.getElementById("dead-letters").textContent=d.dead_letters;
  document.getElementById("late-evidence").textContent=d.late_evidence;
  document.getElementById("aborted-transactions").textContent=
    d.transactions===null?"n/a (at_least_once)":d.transactions.aborted+" ("+d.transactions.fenced+" fenced)";
  const rules=Object.keys(d.chart.series);
  let total=0;const totals={};
  for(const r of rules){totals[r]=d.chart.series[r].reduce((a,b)=>a+b,0);total+=totals[r];}
  document.getElementById("suppressed-total").textContent=total;
  const mf=document.getElementById("misfires");mf.textContent="";
  if(d.misfires.length===0){mf.textContent="none";mf.className="muted";}
  else{mf.className="";for(const m of d.misfires){const w=el("div",m);w.className="warn";mf.appendChild(w);}}
  const svg=document.getElementById("chart");while(svg.firstChild)svg.removeChild(svg.firstChild);
  const n=d.chart.minutes.length,W=960,H=200,bw=W/n;
  let max=1;for(let i=0;i<n;i++){let s=0;for(const r of rules)s+=d.chart.series[r][i];if(s>max)max=s;}
  const NS="http://www.w3.org/2000/svg";
  for(let i=0;i<n;i++){let y=H;rules.forEach((r,k)=>{const v=d.chart.series[r][i];if(!v)return;
    const h=v/max*(H-10);const rect=document.createElementNS(NS,"rect");
    rect.setAttribute("x",i*bw+1);rect.setAttribute("y",y-h);rect.setAttribute("width",Math.max(1,bw-2));
    rect.setAttribute("height",h);rect.setAttribute("fill",COLORS[k%COLORS.length]);
    rect.setAttribute("data-rule",r);rect.setAttribute("data-count",v);
    const t=document.createElementNS(NS,"title");t.textContent=d.chart.minutes[i]+" "+r+": "+v;rect.appendChild(t);
    svg.appendChild(rect);y-=h;});}
  for(let i=0;i<n;i+=10){const t=document.createElementNS(NS,"text");t.setAttribute("x",i*bw);t.setAttribute("y",H+15);
    t.setAttribute("font-size","11");t.textContent=d.chart.minutes[i];svg.appendChild(t);}
  const lg=document.getElementById("legend");lg.textContent="";
  rules.forEach((r,k)=>{const s=el("span");const sw=el("i");sw.className="sw";sw.style.background=COLORS[k%COLORS.length];
    s.appendChild(sw);s.appendChild(document.createTextNode(r));lg.appendChild(s);});
  const tb=document.querySelector("#rule-totals tbody");tb.textContent="";
  for(const r of rules){const tr=el("tr");tr.setAttribute("data-rule",r);tr.appendChild(el("td",r));
    const c=el("td",totals[r]);c.className="count";tr.appendChild(c);tb.appendChild(tr);}
  const lt=document.querySelector("#latest tbody");lt.textContent="";
  for(const m of d.latest){const tr=el("tr");
    for(const v of [m.decided_at,m.rule,m.customer_id,m.trigger,m.message_id,m.reason])tr.appendChild(el("td",v));
    tr.appendChild(el("td",m.evidence.map(e=>e.topic+" "+e.event_id+" at "+e.occurred_at).join("; ")));
    lt.appendChild(tr);}
  window.__loaded=true;
}
async function refresh(){
  try{const r=await fetch("data");if(r.ok)render(await r.json());}
  catch(e){document.getElementById("meta").textContent="worker not answering: "+e;}
}
refresh();setInterval(refresh,5000);
</script></body></html>
"""


def data(
    chart: dict[str, Any],
    latest: list[dict[str, Any]],
    held: int,
    dead_letters: int,
    late_evidence: int,
    misfires: list[str],
    policy: str,
    partitions: list[int],
    updated: str,
    transactions: dict[str, Any] | None = None,
    holds: dict[str, int] | None = None,
    campaigns: list[dict[str, Any]] | None = None,
    links: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "chart": chart,
        "latest": latest,
        "held": held,
        "dead_letters": dead_letters,
        "late_evidence": late_evidence,
        "misfires": misfires,
        "policy": policy,
        "partitions": partitions,
        "updated": updated,
        # None with at_least_once: no transactions to show
        "transactions": transactions,
        # held past their own deadline since the worker started, by reason
        "holds": holds or {},
        # tripped or killed campaigns, and the command that acts on them
        "campaigns": campaigns or [],
        # identity links read since the worker started: links, unlinks, refused
        "links": links or {},
        "cli": cli(),
    }
