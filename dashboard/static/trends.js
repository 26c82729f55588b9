// The trends page: per job, runs and failures per bucket and p50/p95 durations over the chosen
// window, plus the forecast's scored accuracy, drawn with uPlot (vendored). Data comes from
// trends.json and is only ever shown as text or canvas pixels, never inserted as HTML.
"use strict";

(() => {
  const root = document.getElementById("trends");
  if (!root || !window.uPlot) return;
  const clock = window.DashboardClock;
  const charts = [];
  let lastData = null;

  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const seconds = (iso) => Date.parse(iso) / 1000;
  const fmtDuration = (v) => (v === null || v === undefined ? "–" : v < 60 ? `${v.toFixed(1)} s` : `${(v / 60).toFixed(1)} min`);
  const fmtRate = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);

  function tzDate(ts) {
    return clock.isUtc() ? uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC") : new Date(ts * 1e3);
  }

  function widthOf(node) {
    return Math.max(280, Math.floor(node.clientWidth || node.parentElement.clientWidth || 600));
  }

  function axes(yLabel) {
    const stroke = css("--muted"), grid = { stroke: css("--line"), width: 1 };
    return [{ stroke, grid, ticks: grid }, { stroke, grid, ticks: grid, label: yLabel, size: 56 }];
  }

  function plot(node, series, data, yLabel, bucketSeconds) {
    const bars = uPlot.paths.bars({ size: [0.7, 48], align: 0 });
    const opts = {
      width: widthOf(node), height: 180, tzDate, cursor: { drag: { x: false, y: false } },
      legend: { show: true }, axes: axes(yLabel),
      scales: { x: { time: true, range: (u, min, max) => [min, max + bucketSeconds] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
      series: [{ value: (u, ts) => (ts === null ? "–" : clock.format(new Date(ts * 1000).toISOString())) },
        ...series.map((s) => ({ ...s, paths: s.bars ? bars : undefined, points: { show: !s.bars } }))],
    };
    node.replaceChildren();
    const chart = new uPlot(opts, data, node);
    charts.push([chart, node]);
    return chart;
  }

  function renderJob(section, job, bucketSeconds) {
    const xs = job.buckets.map((b) => seconds(b.start));
    const t = job.totals;
    section.querySelector(".totals").textContent =
      `${t.runs} runs, ${t.failed} failed or stopped (${fmtRate(t.failure_rate)}); p50 ${fmtDuration(t.p50)}, p95 ${fmtDuration(t.p95)}`;
    section.dataset.runs = String(t.runs);
    plot(section.querySelector(".runs .plot"), [
      { label: "runs", stroke: css("--info"), fill: css("--info") + "55", bars: true, value: (u, v) => (v ?? "–") },
      { label: "failed / stopped", stroke: css("--bad"), fill: css("--bad"), bars: true, value: (u, v) => (v ?? "–") },
    ], [xs, job.buckets.map((b) => b.runs || null), job.buckets.map((b) => b.failed || null)], "runs", bucketSeconds);  // no bar for 0
    plot(section.querySelector(".durations .plot"), [
      { label: "p50", stroke: css("--ok"), width: 2, value: (u, v) => fmtDuration(v) },
      { label: "p95", stroke: css("--warn"), width: 2, value: (u, v) => fmtDuration(v) },
    ], [xs, job.buckets.map((b) => b.p50), job.buckets.map((b) => b.p95)], "seconds", bucketSeconds);
  }

  function renderAccuracy(runs) {
    const section = document.getElementById("trend-accuracy");
    const node = section.querySelector(".plot");
    if (!runs.length) {
      node.replaceChildren(Object.assign(document.createElement("p"), { className: "muted",
        textContent: "No forecast scored yet: a run is scored once its horizon has passed." }));
      return;
    }
    const xs = runs.map((r) => seconds(`${r.horizon_start}T00:00:00Z`));
    plot(node, [
      { label: "MASE", stroke: css("--info"), width: 2, value: (u, v) => (v === null ? "–" : v.toFixed(3)) },
      { label: "P10–P90 coverage", stroke: css("--warn"), width: 2, value: (u, v) => (v === null ? "–" : `${(v * 100).toFixed(1)} %`) },
    ], [xs, runs.map((r) => r.mase), runs.map((r) => r.coverage)], "MASE / coverage", 86400);
  }

  function render(data) {
    lastData = data;
    for (const [chart] of charts.splice(0)) chart.destroy();
    const trends = data.trends;
    for (const section of document.querySelectorAll("section.trend")) {
      const job = trends.jobs[section.dataset.job];
      if (job) renderJob(section, job, trends.bucket_seconds);
    }
    renderAccuracy(data.accuracy || []);
    document.getElementById("refreshed").textContent = `updated ${clock.format(trends.generated_at, true)} ${clock.zone()}`;
    root.dataset.loaded = "true";
  }

  async function load() {
    const banner = document.getElementById("banner");
    try {
      const url = `${root.dataset.urlData}?window=${encodeURIComponent(root.dataset.window)}`;
      const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
      banner.hidden = true;
      render(body);
    } catch (error) {
      banner.textContent = `Could not load the trends: ${error.message}`;
      banner.hidden = false;
    }
  }

  document.addEventListener("dashboard:timezone", () => { if (lastData) render(lastData); });
  window.addEventListener("resize", () => { for (const [chart, node] of charts) chart.setSize({ width: widthOf(node), height: 180 }); });
  load();
  setInterval(() => { if (!document.hidden) load(); }, 60000);
})();
