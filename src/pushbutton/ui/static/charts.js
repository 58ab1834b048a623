// The experiment page's charts: the spec's figures, the throughput chart and per-step series,
// drawn with Plotly (served by pb ui itself, /static/vendor/plotly.min.js) from the JSON of
// /api/exp/NAME/{figures,throughput,series}; each of the three divs is optional (a task's
// page can hold just <div id="pb-series" data-exp="NAME" data-task="ID">). Polls every few
// seconds with If-None-Match: while nothing changed the server answers an empty 304 and
// nothing is redrawn. Every text from the server goes in with textContent; the strings inside
// the Plotly figures arrive escaped.
(function () {
  "use strict";
  var POLL_MS = 4000;
  var figDiv = document.getElementById("pb-figures");
  var thrDiv = document.getElementById("pb-throughput");
  var serDiv = document.getElementById("pb-series");
  var any = figDiv || thrDiv || serDiv;
  if (!any) return;
  var exp = any.getAttribute("data-exp");
  var base = "/api/exp/" + encodeURIComponent(exp);
  var config = {displaylogo: false, responsive: true, showLink: false, showSendToCloud: false,
                modeBarButtonsToRemove: ["sendDataToCloud"]};
  var etags = {};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function loadPlotly(done) {
    if (window.Plotly) return done();
    var s = document.createElement("script");
    s.src = "/static/vendor/plotly.min.js";
    s.onload = done;
    s.onerror = function () {
      any.appendChild(el("p", "pb-problem", "could not load the chart library"));
    };
    document.head.appendChild(s);
  }

  // GET url as JSON; null when unchanged since the last answer (304)
  function get(url, key) {
    var headers = {"Accept": "application/json"};
    if (key && etags[key]) headers["If-None-Match"] = etags[key];
    return fetch(url, {headers: headers, credentials: "same-origin"}).then(function (r) {
      if (r.status === 304) return null;
      if (key && r.headers.get("ETag")) etags[key] = r.headers.get("ETag");
      return r.json().then(function (body) {
        if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        return body;
      });
    });
  }

  // one figure box per name, kept across refreshes (Plotly.react redraws in place)
  function box(parent, name) {
    var id = "pb-fig-" + name.replace(/[^A-Za-z0-9_-]/g, "_");
    var f = document.getElementById(id);
    if (!f) {
      f = el("figure", "pb-fig");
      f.id = id;
      f.setAttribute("data-name", name);
      var plot = el("div", "pb-plot");
      plot.style.minHeight = "300px";
      f.appendChild(plot);
      f.appendChild(el("figcaption", "pb-caption"));
      parent.appendChild(f);
    }
    return f;
  }

  function draw(parent, fig) {
    var f = box(parent, fig.name);
    var plot = f.querySelector(".pb-plot");
    Plotly.react(plot, fig.plotly.data, fig.plotly.layout, config);
    var cap = f.querySelector(".pb-caption");
    cap.textContent = "";
    if (fig.caption) cap.appendChild(el("p", "pb-caption-text", fig.caption));
    (fig.notes || []).forEach(function (n) { cap.appendChild(el("p", "pb-note", n)); });
    return f;
  }

  function problems(parent, list) {
    var p = parent.querySelector(":scope > .pb-problems");
    if (!p) {
      p = el("div", "pb-problems");
      parent.insertBefore(p, parent.firstChild);
    }
    p.textContent = "";
    (list || []).forEach(function (t) { p.appendChild(el("p", "pb-problem", t)); });
  }

  function figures() {
    if (!figDiv) return Promise.resolve();
    return get(base + "/figures", "figures").then(function (body) {
      if (!body) return;
      problems(figDiv, body.problems);
      var keep = {};
      body.figures.forEach(function (fig) { keep[draw(figDiv, fig).id] = true; });
      Array.prototype.slice.call(figDiv.querySelectorAll(":scope > figure")).forEach(
        function (f) { if (!keep[f.id]) { Plotly.purge(f.querySelector(".pb-plot")); f.remove(); } });
      if (!body.figures.length && !(body.problems || []).length)
        problems(figDiv, ["no figures yet"]);
    });
  }

  function throughput() {
    if (!thrDiv) return Promise.resolve();
    return get(base + "/throughput", "throughput").then(function (body) {
      if (!body) return;
      var f = draw(thrDiv, {name: "throughput", plotly: body.plotly, notes: body.notes});
      var now = f.querySelector(".pb-now") || f.insertBefore(el("p", "pb-now"),
                                                              f.querySelector(".pb-caption"));
      var c = body.now || {};
      now.textContent = "now: " + ["done", "failed", "running", "pending", "cancelled"]
        .map(function (s) { return (c[s] || 0) + " " + s; }).join(", ") +
        " (of " + body.total + ")";
      var t = body.timing;
      var tline = f.querySelector(".pb-timing") || f.insertBefore(el("p", "pb-timing"),
                                                                   f.querySelector(".pb-caption"));
      tline.textContent = !t ? "" : "task time " + t.task_time +
        (t.cpu_time ? " (CPU time " + t.cpu_time + ")" : "") + " over " + t.wall +
        " wall · per done task: mean " + t.mean + ", median " + t.median + ", p90 " + t.p90 +
        " · failure rate " + t.failure_rate + (t.retried ? " · " + t.retried + " retried" : "");
    });
  }

  // series: an input for task ids, one figure per metric
  var serInput = null;
  function seriesForm() {
    var form = el("form", "pb-series-form");
    var lab = el("label", null, "tasks (ids or prefixes): ");
    serInput = el("input");
    serInput.type = "text";
    serInput.name = "task";
    serInput.size = 50;
    serInput.placeholder = "e.g. 3fa2 91c0";
    // a page about one task (data-task="ID") shows that task's series
    serInput.value = serDiv.getAttribute("data-task") || "";
    lab.appendChild(serInput);
    form.appendChild(lab);
    var btn = el("button", null, "show");
    btn.type = "submit";
    form.appendChild(btn);
    form.addEventListener("submit", function (ev) { ev.preventDefault(); series(); });
    serDiv.appendChild(form);
    serDiv.appendChild(el("div", "pb-series-notes"));
    serDiv.appendChild(el("div", "pb-series-figs"));
  }

  var seriesKey = null;
  function series(poll) {
    if (!serDiv) return Promise.resolve();
    if (!serInput) seriesForm();
    var q = serInput.value.split(/[\s,]+/).filter(Boolean)
      .map(function (t) { return "task=" + encodeURIComponent(t); }).join("&");
    var url = base + "/series" + (q ? "?" + q : "");
    // while polling, refetch only when the figures changed (new results may bring new steps)
    if (poll && seriesKey === url + etags.figures) return Promise.resolve();
    seriesKey = url + etags.figures;
    var notes = serDiv.querySelector(".pb-series-notes");
    var figs = serDiv.querySelector(".pb-series-figs");
    return get(url, null).then(function (body) {
      notes.textContent = "";
      (body.notes || []).forEach(function (n) { notes.appendChild(el("p", "pb-note", n)); });
      if (!q && body.tasks.length) serInput.placeholder = body.tasks.join(" ");
      Array.prototype.slice.call(figs.children).forEach(function (f) {
        Plotly.purge(f.querySelector(".pb-plot")); f.remove(); });
      body.figures.forEach(function (fig) { draw(figs, fig); });
    }).catch(function (e) {
      notes.textContent = "";
      notes.appendChild(el("p", "pb-problem", e.message));
    });
  }

  var busy = false;
  function tick(first) {
    if (busy || (!first && document.hidden)) return;
    busy = true;
    var report = function (where) {
      return function (e) { problems(where, ["could not update: " + e.message]); };
    };
    Promise.all([
      thrDiv ? throughput().catch(report(thrDiv)) : null,
      figDiv ? figures().catch(report(figDiv)) : null,
    ]).then(function () { return series(!first); })
      .then(function () { busy = false; }, function () { busy = false; });
  }

  loadPlotly(function () {
    tick(true);
    window.setInterval(tick, POLL_MS);
  });
})();
