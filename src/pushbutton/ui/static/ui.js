// pb ui: live updates (server-sent events from /events), results table controls, action
// confirmations. Text is set with textContent only: user strings never become markup.
"use strict";
(function () {
  const PB = (window.PB = window.PB || {});
  PB.token = (document.querySelector('meta[name="pb-token"]') || {}).content || "";

  function fmtDuration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    if (s < 10) return s.toFixed(1) + "s";
    if (s < 60) return Math.round(s) + "s";
    const pad = (n) => String(Math.floor(n)).padStart(2, "0");
    if (s < 3600) return Math.floor(s / 60) + "m" + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + pad((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d" + pad((s % 86400) / 3600) + "h";
  }
  function fmtCount(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function fmtRate(r) {
    return r === null || r === undefined ? "–" :
      Number(r).toLocaleString("en-US", {minimumFractionDigits: 1, maximumFractionDigits: 1}) + "/s";
  }
  function fmtUtc(t) {
    if (t === null || t === undefined) return "–";
    return new Date(t * 1000).toISOString().slice(0, 19).replace("T", " ");
  }
  PB.fmt = {duration: fmtDuration, count: fmtCount, rate: fmtRate, utc: fmtUtc};

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  PB.el = el;

  // one element holding a summary: cells marked data-k=...
  function fill(root, r) {
    const set = (k, text) => root.querySelectorAll('[data-k="' + k + '"]').forEach((c) => {
      if (k === "state") {
        const s = c.querySelector(".pb-state") || c;
        s.textContent = text;
        s.className = "pb-state pb-" + text;
      } else if (k !== "progress") {
        c.textContent = text;
      }
    });
    set("state", r.state);
    set("pct", (100 * r.progress).toFixed(1) + "%");
    set("finished", fmtCount(r.finished) + " / " + fmtCount(r.total));
    set("rate", fmtRate(r.rate_per_s));
    set("eta", fmtDuration(r.eta_s));
    set("failed", fmtCount(r.failed));
    set("last_run", fmtUtc(r.last_run));
    set("target", r.target || "–");
    root.querySelectorAll("progress").forEach((p) => { p.value = r.progress; });
  }

  function newRow(r) {
    const tr = el("tr", {"data-exp": r.name});
    const a = el("a", {href: "/exp/" + encodeURIComponent(r.name)}, r.name);
    const td = el("td"); td.appendChild(a); tr.appendChild(td);
    const st = el("td", {"data-k": "state"}); st.appendChild(el("span", {class: "pb-state"}));
    tr.appendChild(st);
    const pr = el("td", {"data-k": "progress"});
    pr.appendChild(el("progress", {max: "1", value: "0"}));
    pr.appendChild(document.createTextNode(" "));
    pr.appendChild(el("span", {"data-k": "pct"}));
    tr.appendChild(pr);
    for (const k of ["finished", "rate", "eta", "failed", "last_run", "target"])
      tr.appendChild(el("td", {"data-k": k}));
    return tr;
  }

  function live() {
    const table = document.getElementById("pb-experiments");
    const summary = document.getElementById("pb-summary");
    if (!table && !summary) return;
    const status = document.getElementById("pb-live");
    const src = new EventSource("/events");
    src.addEventListener("open", () => { if (status) status.textContent = "connected"; });
    src.addEventListener("error", () => { if (status) status.textContent = "reconnecting…"; });
    src.addEventListener("experiments", (ev) => {
      const rows = JSON.parse(ev.data);
      PB.last = rows;
      if (status) status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
      if (summary) {
        const r = rows.find((x) => x.name === summary.dataset.exp);
        if (r) fill(summary, r);
      }
      if (table) {
        const body = table.tBodies[0];
        const empty = body.querySelector(".pb-empty");
        if (empty && rows.length) empty.remove();
        const have = new Map();
        body.querySelectorAll("tr[data-exp]").forEach((tr) => have.set(tr.dataset.exp, tr));
        rows.forEach((r, i) => {
          let tr = have.get(r.name);
          if (!tr) tr = newRow(r);
          fill(tr, r);
          if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
        });
      }
      document.dispatchEvent(new CustomEvent("pb:experiments", {detail: rows}));
    });
    PB.events = src;
  }

  // forms marked data-confirm ask first (no inline handlers: CSP forbids them)
  function confirms() {
    document.querySelectorAll("form[data-confirm]").forEach((f) => {
      f.addEventListener("submit", (ev) => {
        if (!window.confirm(f.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  document.addEventListener("DOMContentLoaded", () => { live(); confirms(); });
})();
