// cubekv console. Plain JavaScript, no dependencies; served by kvnode
// under /ui/ with a Content-Security-Policy that forbids inline script.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { prefix: "", sep: "/", after: "", writable: false, entry: null, view: "text", watchGen: 0 };

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function api(path, opts) {
    const resp = await fetch("api/" + path, opts);
    let body = null;
    try { body = await resp.json(); } catch (e) { body = { error: resp.statusText }; }
    return { status: resp.status, body: body };
  }

  // ---- cluster ----
  function spark(values, title) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 90 22");
    const t = document.createElementNS(ns, "title");
    t.textContent = title;
    svg.appendChild(t);
    const vs = values.map((v) => (v < 0 ? 0 : v));
    const max = Math.max(1e-9, ...vs);
    const pts = vs.map((v, i) => {
      const x = vs.length < 2 ? 0 : (i * 90) / (vs.length - 1);
      return x.toFixed(1) + "," + (21 - (v / max) * 20).toFixed(1);
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function last(a) { return a && a.length ? a[a.length - 1] : null; }

  async function refreshCluster() {
    let r;
    try { r = await api("cluster"); } catch (e) { r = { status: 0, body: { error: String(e) } }; }
    const tbody = $("nodes").tBodies[0];
    if (r.status !== 200 || r.body.error) {
      $("cluster-error").textContent = "cluster: " + (r.body && r.body.error);
      for (const tr of tbody.rows) tr.classList.add("down");
      return;
    }
    const c = r.body;
    $("cluster-error").textContent = "";
    $("served").textContent = "served by " + c.served_by + ", term " + c.term;
    setWritable(c.writable);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
    tbody.replaceChildren();
    for (const m of c.members) {
      const tr = el("tr");
      tr.dataset.node = m.node_id;
      if (m.leader) tr.classList.add("leader");
      if (!m.answering) { tr.classList.add("down"); tr.title = m.error || "gossip: " + m.gossip_name; }
      const ops = last(m.ops), p99 = last(m.p99_ms);
      const cells = [m.node_id, m.role, String(c.term), m.applied_index < 0 ? "?" : String(m.applied_index),
        m.last_contact_ms < 0 ? "?" : m.last_contact_ms + " ms", m.gossip_name, m.suffrage_name || "-", m.version || "-"];
      for (const v of cells) tr.appendChild(el("td", "", v));
      const tdOps = el("td", "", ops === null ? "-" : ops.toFixed(1) + " ");
      tdOps.appendChild(spark(m.ops || [], "ops/s"));
      const tdP = el("td", "", p99 === null || p99 < 0 ? "- " : p99.toFixed(2) + " ms ");
      tdP.appendChild(spark(m.p99_ms || [], "p99 ms"));
      tr.appendChild(tdOps);
      tr.appendChild(tdP);
      tbody.appendChild(tr);
    }
    document.body.dataset.nodes = String(c.members.length);
  }

  function setWritable(w) {
    state.writable = w;
    document.body.classList.toggle("ro", !w);
    $("mode").textContent = w ? "read-write" : "read-only";
    $("mode").classList.toggle("rw", w);
  }

  // ---- key browser ----
  async function openPrefix(prefix, more) {
    state.prefix = prefix;
    state.sep = $("sep").value;
    $("prefix").value = prefix;
    await loadList(prefix, more);
    if (!more) startLive(prefix);
  }

  // loadList lists the first page of prefix again, or (more) the next page.
  async function loadList(prefix, more) {
    if (!more) state.after = "";
    const q = new URLSearchParams({ prefix: prefix, sep: state.sep });
    if (more && state.after) q.set("after", state.after);
    const r = await api("keys?" + q.toString());
    if (r.status !== 200) { $("keys-error").textContent = r.body.error; return; }
    $("keys-error").textContent = "";
    const list = $("entries");
    if (!more) list.replaceChildren();
    const have = new Set(Array.from(list.children).map((li) => li.dataset.name));
    for (const f of r.body.folders) {
      if (have.has(f)) continue;
      const li = el("li", "folder", f.slice(prefix.length));
      li.dataset.name = f;
      li.addEventListener("click", () => openPrefix(f, false));
      list.appendChild(li);
    }
    for (const k of r.body.keys) {
      const li = el("li", "key", k.key.slice(prefix.length) || k.key);
      li.dataset.name = k.key;
      li.addEventListener("click", () => openKey(k.key));
      list.appendChild(li);
    }
    state.after = r.body.continuation || "";
    $("more").hidden = !state.after;
  }

  function up() {
    const sep = $("sep").value;
    let p = state.prefix;
    if (sep && p.endsWith(sep)) p = p.slice(0, -sep.length);
    const i = sep ? p.lastIndexOf(sep) : -1;
    openPrefix(i < 0 ? "" : p.slice(0, i + sep.length), false);
  }

  function b64bytes(b64) {
    const s = atob(b64 || "");
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }

  function render(bytes, view) {
    if (view === "hex") {
      const lines = [];
      for (let i = 0; i < bytes.length; i += 16) {
        const row = Array.from(bytes.slice(i, i + 16));
        lines.push(i.toString(16).padStart(8, "0") + "  " + row.map((b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(48) +
          "  " + row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join(""));
      }
      return lines.join("\n");
    }
    const text = new TextDecoder().decode(bytes);
    if (view === "json") {
      try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return "(not JSON: " + e.message + ")\n" + text; }
    }
    return text;
  }

  function showEntry(e) {
    state.entry = e;
    $("key").value = e ? e.key : "";
    $("key").readOnly = !!e;
    $("meta").textContent = e ? "mod index " + e.mod_index + ", created at " + e.create_index + (e.lease_id ? ", lease " + e.lease_id : "") : "new key";
    $("value").textContent = e ? render(b64bytes(e.value), state.view) : "";
    $("editor").classList.remove("on");
    $("conflict").classList.remove("on");
    $("detail").dataset.modIndex = e ? String(e.mod_index) : "0";
  }

  async function openKey(key) {
    const r = await api("key?" + new URLSearchParams({ key: key }).toString());
    $("status").textContent = "";
    $("status").className = "status";
    if (r.status !== 200) { $("status").className = "error"; $("status").textContent = r.body.error; return; }
    showEntry(r.body);
  }

  function startEdit(create) {
    if (create) showEntry(null);
    $("editor").value = state.entry ? new TextDecoder().decode(b64bytes(state.entry.value)) : "";
    $("editor").classList.add("on");
    $("conflict").classList.remove("on");
    $("editor").focus();
  }

  async function write(del) {
    const key = $("key").value;
    const body = { key: key, value: $("editor").value, mod_index: state.entry ? state.entry.mod_index : 0, delete: !!del };
    const r = await api("key", { method: "POST", headers: { "Content-Type": "application/json", "X-Cubekv-Console": "1" }, body: JSON.stringify(body) });
    if (r.status === 409) {
      const cur = r.body.current;
      $("conflict-index").textContent = cur ? String(cur.mod_index) : "(deleted)";
      $("conflict-value").textContent = cur ? render(b64bytes(cur.value), state.view) : "";
      $("conflict").classList.add("on");
      $("status").textContent = "";
      return;
    }
    if (r.status !== 200) { $("status").textContent = "error: " + r.body.error; $("status").className = "error"; return; }
    if (del) { showEntry(null); $("editor").classList.remove("on"); } else { await openKey(key); }
    $("status").className = "status";
    $("status").textContent = (del ? "deleted" : "saved") + " at index " + r.body.index;
    loadList(state.prefix, false);
  }

  // ---- live view (long poll) ----
  async function startLive(prefix) {
    const gen = ++state.watchGen;
    $("live-prefix").textContent = prefix === "" ? "(all keys)" : prefix;
    $("events").replaceChildren();
    let after = 0;
    while (gen === state.watchGen) {
      const q = new URLSearchParams({ prefix: prefix, after: String(after), wait: "15000" });
      let r;
      try { r = await api("watch?" + q.toString()); } catch (e) { r = { status: 0, body: {} }; }
      if (gen !== state.watchGen) return;
      if (r.status === 410) { after = 0; continue; } // history compacted: start again from now
      if (r.status !== 200) { await new Promise((ok) => setTimeout(ok, 2000)); continue; }
      for (const ev of r.body.events) {
        const li = el("li", "", "#" + ev.index + " " + ev.type + " " + ev.key);
        $("events").prepend(li);
      }
      while ($("events").children.length > 200) $("events").lastChild.remove();
      // A key came or went: list the first page again (unless paged on).
      if (r.body.events.length && !state.after) loadList(prefix, false);
      after = r.body.next;
    }
  }

  // ---- leases ----
  async function refreshLeases() {
    const r = await api("leases");
    const tbody = $("leases").tBodies[0];
    tbody.replaceChildren();
    if (r.status !== 200) { tbody.appendChild(el("tr")).appendChild(el("td", "error", r.body.error)); return; }
    for (const l of r.body.leases) {
      const tr = el("tr");
      for (const v of [String(l.id), (l.ttl_ms / 1000).toFixed(1) + " s", (l.remaining_ms / 1000).toFixed(1) + " s", String(l.keys)]) tr.appendChild(el("td", "", v));
      tbody.appendChild(tr);
    }
  }

  function every(ms, fn) {
    const tick = async () => { try { await fn(); } finally { setTimeout(tick, ms); } };
    tick();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("go").addEventListener("click", () => openPrefix($("prefix").value, false));
    $("prefix").addEventListener("keydown", (e) => { if (e.key === "Enter") openPrefix($("prefix").value, false); });
    $("up").addEventListener("click", up);
    $("more").addEventListener("click", () => openPrefix(state.prefix, true));
    $("new").addEventListener("click", () => startEdit(true));
    $("edit").addEventListener("click", () => startEdit(false));
    $("save").addEventListener("click", () => write(false));
    $("delete").addEventListener("click", () => write(true));
    $("cancel").addEventListener("click", () => showEntry(state.entry));
    $("reload").addEventListener("click", () => openKey($("key").value));
    for (const r of document.querySelectorAll("input[name=view]")) {
      r.addEventListener("change", () => { state.view = r.value; showEntry(state.entry); });
    }
    setWritable(false);
    every(1000, refreshCluster);
    every(2000, refreshLeases);
    openPrefix("", false);
  });
})();
