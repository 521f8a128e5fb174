// The status page: polls status.json every second, shows rates as the
// difference of two readings and draws the last minute of each as a
// sparkline. No library: it must work where no CDN is reachable.
"use strict";
const history = new Map(); // row key -> packets/s of the last 60 s
let prev = null;

function rates(cur, old, dt) {
  if (!old || dt <= 0) return { pps: 0, fps: 0 };
  return { pps: Math.max(0, (cur.in_pkts - old.in_pkts) / dt), fps: Math.max(0, (cur.conns - old.conns) / dt) };
}

function hostPort(a, p) { return (a.includes(":") ? "[" + a + "]" : a) + ":" + p; }

function svcName(s) { return hostPort(s.addr, s.port) + "/" + s.proto.toLowerCase(); }

function spark(key, v) {
  let h = history.get(key);
  if (!h) { h = []; history.set(key, h); }
  h.push(v);
  if (h.length > 60) h.shift();
  const c = document.createElement("canvas");
  c.width = 120; c.height = 20;
  c.dataset.key = key;
  const g = c.getContext("2d");
  const top = Math.max(1, ...h);
  g.strokeStyle = "#36c";
  g.beginPath();
  h.forEach((y, i) => {
    const x = 120 - (h.length - 1 - i) * 2, yy = 19 - (y / top) * 18;
    if (i === 0) g.moveTo(x, yy); else g.lineTo(x, yy);
  });
  g.stroke();
  return c;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function render(doc) {
  const st = doc.state;
  const dt = prev ? (Date.parse(st.taken) - Date.parse(prev.taken)) / 1000 : 0;
  const old = new Map();
  if (prev) for (const s of prev.services || []) {
    old.set(svcName(s), s.stats);
    for (const b of s.backends || []) old.set(svcName(s) + " " + hostPort(b.addr, b.port), b.stats);
  }
  const health = new Map(doc.health.map(h => [h.service + " " + h.backend, h.up]));
  const tb = document.querySelector("#services tbody");
  tb.replaceChildren();
  for (const s of st.services || []) {
    const name = svcName(s), r = rates(s.stats, old.get(name), dt);
    const tr = document.createElement("tr");
    tr.className = "svc"; tr.dataset.service = name;
    cell(tr, name); cell(tr, s.scheduler, "l"); cell(tr, s.installed ? "installed" : "not installed", "l");
    cell(tr, ""); cell(tr, ""); cell(tr, ""); cell(tr, ""); cell(tr, "");
    cell(tr, r.pps.toFixed(1), "pps"); cell(tr, r.fps.toFixed(1)); cell(tr, spark(name, r.pps));
    tb.appendChild(tr);
    for (const b of s.backends || []) {
      const bn = hostPort(b.addr, b.port), key = name + " " + bn, br = rates(b.stats, old.get(key), dt);
      const up = health.get(key);
      const row = document.createElement("tr");
      row.dataset.backend = bn;
      cell(row, ""); cell(row, bn + (b.sorry ? " (sorry)" : ""), "l");
      cell(row, up === undefined ? "" : (up ? "up" : "down"), up === false ? "down" : "up");
      cell(row, b.weight); cell(row, b.config_weight); cell(row, b.override || "", "l");
      cell(row, b.active_conn); cell(row, b.inact_conn);
      cell(row, br.pps.toFixed(1), "pps"); cell(row, br.fps.toFixed(1)); cell(row, spark(key, br.pps));
      tb.appendChild(row);
    }
  }
  const vb = document.querySelector("#vrrp tbody");
  vb.replaceChildren();
  for (const v of st.vrrp || []) {
    const tr = document.createElement("tr");
    cell(tr, v.name); cell(tr, v.interface, "l"); cell(tr, v.vrid); cell(tr, v.state, "l");
    cell(tr, v.priority === v.base_priority ? v.priority : v.priority + " (" + v.base_priority + ")");
    cell(tr, v.adverts_sent); cell(tr, v.adverts_received); cell(tr, (v.vips || []).join(" "), "l");
    vb.appendChild(tr);
  }
  const ev = document.getElementById("events");
  ev.replaceChildren();
  for (const e of (doc.events || []).slice().reverse()) {
    const li = document.createElement("li");
    li.textContent = new Date(e.at).toLocaleTimeString() + " " + e.kind + ": " + e.text;
    if (!e.ok) li.className = "bad";
    ev.appendChild(li);
  }
  document.getElementById("taken").textContent = new Date(st.taken).toLocaleTimeString();
  prev = st;
}

async function poll() {
  try {
    const r = await fetch("status.json", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    render(await r.json());
    document.getElementById("err").textContent = "";
  } catch (e) {
    document.getElementById("err").textContent = "no answer: " + e.message;
  }
}

poll();
setInterval(poll, 1000);
