// tracekit web UI: draws the charts whose data the server put in <script type="application/json">
// blocks (JSON.parse only: nothing here evaluates text from a page), and redraws them when htmx swaps
// new content in (a running optimization's page). No inline scripts: the CSP forbids them.
(function () {
  "use strict";

  // The data: the page's <script type="application/json"> block; content htmx swapped in has none
  // (htmx drops every script element it swaps: allowScriptTags is false), so then it is fetched.
  function withData(el, draw) {
    var src = document.getElementById(el.getAttribute("data-source"));
    if (src) { draw(el, JSON.parse(src.textContent)); return; }
    var url = el.getAttribute("data-url");
    if (!url) { return; }
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("chart data: HTTP " + r.status); } return r.json(); })
      .then(function (d) { draw(el, d); })
      .catch(function (e) { el.textContent = String(e); });
  }

  function width(el) { return Math.max(el.clientWidth || 0, 320); }

  var POINT_SERIES = [
    ["baseline", "baseline runs", "#1f77b4", "#1f77b4"],
    ["keep", "kept", "#2ca02c", "#2ca02c"],
    ["worse", "discarded: worse", "#9a9a9a", "#bbbbbb"],
    ["near", "discarded: better, not past the keep threshold", "#ff7f0e", null],
    ["failed", "crash / timeout (no metric)", "#d62728", "#d62728"],
    ["invalid", "invalid proposal (no run)", "#8250df", "#c8b3f5"],
  ];

  function progress(el, d) {
    if (!d || !d.x.length) { return; }
    var series = [{ label: "experiment" }];
    var arrays = [d.x];
    POINT_SERIES.forEach(function (p) {
      series.push({ label: p[1], stroke: p[2], fill: p[3] || "rgba(0,0,0,0)", width: 0, paths: function () { return null; },
                    points: { show: true, size: 9, width: 2, stroke: p[2], fill: p[3] || "#fff" } });
      arrays.push(d.series[p[0]]);
    });
    series.push({ label: "kept, with alarms", stroke: "#d62728", fill: "rgba(0,0,0,0)", width: 0, paths: function () { return null; },
                  points: { show: true, size: 15, width: 2, stroke: "#d62728", fill: "rgba(0,0,0,0)" } });  // a ring around the keep
    arrays.push(d.series.alarm);
    series.push({ label: "incumbent", stroke: "#2ca02c", width: 2, paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } });
    arrays.push(d.series.incumbent);
    series.push({ label: "keep threshold (low)", stroke: "rgba(44,160,44,0.25)", width: 1, paths: uPlot.paths.stepped({ align: -1 }), points: { show: false } });
    arrays.push(d.series.band_lo);
    series.push({ label: "keep threshold (high)", stroke: "rgba(44,160,44,0.25)", width: 1, paths: uPlot.paths.stepped({ align: -1 }), points: { show: false } });
    arrays.push(d.series.band_hi);
    var hi = series.length - 1, lo = hi - 1;
    var opts = {
      width: width(el), height: 340,
      series: series,
      bands: [{ series: [hi, lo], fill: "rgba(44,160,44,0.14)" }],
      scales: { x: { time: false } },
      axes: [{ label: "experiment", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, { label: d.metric + " (" + (d.direction === "min" ? "lower" : "higher") + " is better)", size: 70 }],
      cursor: { points: { size: 11 } },
      hooks: { setCursor: [function (u) {
        var info = document.getElementById(el.id + "-hover");
        if (info) { info.textContent = u.cursor.idx != null ? d.labels[u.cursor.idx] : ""; }
      }], ready: [function (u) {
        u.over.addEventListener("click", function () {
          var i = u.cursor.idx;
          if (i != null && d.ids[i]) { window.location.href = "/ui/experiments/" + encodeURIComponent(d.ids[i]); }
        });
      }] },
    };
    el.textContent = "";
    var plot = new uPlot(opts, arrays, el);
    var drawn = 0;
    for (var s = 1; s <= POINT_SERIES.length; s++) {
      arrays[s].forEach(function (v) { if (v !== null && v !== undefined) { drawn++; } });
    }
    el.setAttribute("data-points", String(drawn));
    el._plot = plot;
  }

  function curves(el, d) {
    if (!d) { return; }
    el.textContent = "";
    var colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
    d.forEach(function (c, i) {
      var box = document.createElement("div");
      box.className = "curve";
      el.appendChild(box);
      new uPlot({
        title: c.name, width: Math.min(width(el), 720), height: 220, scales: { x: { time: false } },
        series: [{ label: "step" }, { label: c.name, stroke: colors[i % colors.length], width: 2 }],
        axes: [{ label: "step" }, { size: 60 }],
      }, [c.x, c.y], box);
    });
    el.setAttribute("data-curves", String(d.length));
  }

  var DRAW = { progress: progress, curves: curves };

  function drawAll(root) {
    if (typeof uPlot === "undefined") { return; }
    var found = Array.prototype.slice.call((root || document).querySelectorAll("[data-chart]"));
    if (root && root.matches && root.matches("[data-chart]")) { found.push(root); }
    found.forEach(function (el) {
      var f = DRAW[el.getAttribute("data-chart")];
      if (f) { withData(el, f); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  // htmx:load fires on content htmx swapped in (the new #run-body replaces the old one, outerHTML)
  document.addEventListener("htmx:load", function (ev) { if (ev.target !== document.body) { drawAll(ev.target); } });
})();
