// The clusters page refreshes its content every few seconds from /clusters/part (the same
// server-rendered, escaped HTML as the page; parsed inertly, never run as script).
(function () {
  "use strict";
  var EVERY_MS = 5000;
  function refresh() {
    if (document.hidden) return;
    fetch("/clusters/part", {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.text(); })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("pb-clusters");
        var old = document.getElementById("pb-clusters");
        if (fresh && old) {
          // keep open <details> open across refreshes
          var open = {};
          old.querySelectorAll("tr[data-target] details[open]").forEach(function (d) {
            open[d.closest("tr").getAttribute("data-target")] = true; });
          fresh.querySelectorAll("tr[data-target]").forEach(function (tr) {
            var d = tr.querySelector("details");
            if (d && open[tr.getAttribute("data-target")]) d.open = true; });
          old.replaceWith(document.importNode(fresh, true));
        }
      })
      .catch(function () { /* the next refresh tries again */ });
  }
  window.setInterval(refresh, EVERY_MS);
  // the first view may have been rendered before a poll answered
  if (document.querySelector("#pb-clusters .pb-state") &&
      document.body.textContent.indexOf("checking…") >= 0) window.setTimeout(refresh, 1500);
})();
