// The monitoring page: fills the cards from data.json and refreshes them without reloading.
// Data is only ever inserted as text (append of strings / textContent), never as HTML, so job
// arguments, error texts and worker names cannot become markup. Actions are same-origin POSTs.
"use strict";

(() => {
  const root = document.getElementById("dashboard");
  if (!root) return;
  const urls = root.dataset;
  const refreshMs = Math.max(2, Number(urls.refreshSeconds) || 5) * 1000;
  // No successful refresh for this long: the "updated" time turns into a warning, and a hung
  // request is abandoned so the next one can start.
  const staleMs = Math.max(refreshMs, (Number(urls.staleSeconds) || 15) * 1000);
  let lastSuccess = Date.now();
  let lastGenerated = null;
  const SVG = "http://www.w3.org/2000/svg";
  let serverNow = Date.now();
  let loading = false;
  let again = false;

  // --- DOM helpers (text only) ---------------------------------------------------------------
  function h(tag, props, ...kids) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      node.append(kid instanceof Node ? kid : String(kid));
    }
    return node;
  }

  function s(tag, attrs, ...kids) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const kid of kids.flat()) if (kid !== null && kid !== undefined) node.append(kid instanceof Node ? kid : String(kid));
    return node;
  }

  function table(head, rows, headGroups) {
    const thead = h("thead", null,
      headGroups ? h("tr", { class: "group" }, headGroups.map(([label, span, cls]) => h("th", { colspan: span, class: cls }, label))) : null,
      h("tr", null, head.map((c) => (typeof c === "string" ? h("th", null, c) : h("th", { class: c[1] }, c[0])))));
    // Each cell carries its column's name: at phone width the rows become cards that show it.
    const groups = (headGroups || []).flatMap(([label, span]) => Array(span).fill(label));
    const labels = head.map((c, i) => [groups[i], typeof c === "string" ? c : c[0]].filter(Boolean).join(" · "));
    for (const row of [rows].flat(Infinity)) {
      if (!(row instanceof Element)) continue;
      [...row.children].forEach((cell, i) => { if (labels[i]) cell.dataset.label = labels[i]; });
    }
    return h("table", null, thead, h("tbody", null, rows));
  }

  function badge(text, kind) {
    return h("span", { class: `badge ${kind || text}` }, text);
  }

  function fill(cardId, ...content) {
    const body = document.querySelector(`#${cardId} .body`);
    body.replaceChildren(...content.flat().filter((n) => n !== null && n !== undefined));
  }

  // --- formatting ------------------------------------------------------------------------------
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} m ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} m`;
  }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const abs = Math.abs(seconds);
    let text;
    if (abs < 60) text = `${Math.round(abs)} s`;
    else if (abs < 3600) text = `${Math.round(abs / 60)} min`;
    else if (abs < 86400 * 2) text = `${(abs / 3600).toFixed(1)} h`;
    else text = `${Math.round(abs / 86400)} d`;
    return seconds >= 0 ? `${text} ago` : `in ${text}`;
  }

  const clock = window.DashboardClock; // clock.js: the browser's zone or UTC, as the reader chose

  function fmtTime(iso) {
    return clock.format(iso);
  }

  function timeCell(iso) {
    if (!iso) return h("td", null, h("span", { class: "muted" }, "–"));
    const age = (serverNow - Date.parse(iso)) / 1000;
    return h("td", { title: iso }, fmtTime(iso), h("br"), h("span", { class: "muted" }, fmtAge(age)));
  }

  function fmtPercent(rate) {
    return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)} %`;
  }

  function rateClass(rate) {
    if (rate === null || rate === undefined) return "muted";
    return rate >= 0.95 ? "rate-good" : rate >= 0.8 ? "rate-warn" : "rate-bad";
  }

  function fmtBytes(bytes) {
    if (bytes === null || bytes === undefined) return "–";
    return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  }

  function runDuration(run) {
    if (!run.started_at || !run.ended_at) return null;
    return (Date.parse(run.ended_at) - Date.parse(run.started_at)) / 1000;
  }

  // --- links -----------------------------------------------------------------------------------
  const rqJob = (id) => urls.urlRqJob.replace("JOB_ID", encodeURIComponent(id));
  const rqJobs = (queue, registry) =>
    urls.urlRqJobs.replace("QUEUE", encodeURIComponent(queue)).replace("REGISTRY", encodeURIComponent(registry));

  // Only while RQ still holds the run's job (skipped runs never had one; ended ones expire):
  // otherwise a note says why, instead of a link to a page that cannot show anything.
  function rqJobLink(run, label) {
    if (run.rq_job) return h("a", { href: rqJob(run.job_id), class: "rq-job", title: "open in rq-dashboard" }, label);
    const why = run.status === "skipped" ? "skipped: never queued in RQ" : "RQ no longer holds this job";
    return h("span", { class: "muted no-rq-job", title: why }, "no rq job");
  }

  // A run id anywhere on the page opens the run's own page (a URL that can be shared).
  const runPage = (id) => `${urls.urlRuns}${encodeURIComponent(id)}`;

  function runLink(id) {
    return h("a", { href: runPage(id), class: "mono run-link", dataset: { runId: id } }, id);
  }

  // --- actions ---------------------------------------------------------------------------------
  function banner(message, isError, kind) {
    const node = document.getElementById("banner");
    node.textContent = message;
    node.className = isError ? "banner error" : "banner";
    node.dataset.kind = kind || "action";
    node.hidden = !message;
  }

  // An action's outcome is shown next to the control that asked for it (and names the run), for
  // FEEDBACK_MS; it survives the cards' re-rendering by being re-attached after each render.
  const FEEDBACK_MS = 8000;
  const feedbacks = new Map(); // "schedule:<name>" | "run:<id>" -> { text, ok, until }

  function feedbackKey(button) {
    if (!button) return null;
    if (button.dataset.schedule) return `schedule:${button.dataset.schedule}`;
    return button.dataset.run ? `run:${button.dataset.run}` : null;
  }

  function attachFeedback() {
    for (const node of document.querySelectorAll(".action-feedback")) node.remove();
    const now = Date.now();
    for (const [key, f] of feedbacks) {
      if (now > f.until) { feedbacks.delete(key); continue; }
      const [kind, id] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
      const selector = kind === "schedule" ? `#card-schedules tr[data-schedule="${CSS.escape(id)}"] td.actions`
        : `tr[data-run="${CSS.escape(id)}"] td.actions`;
      for (const host of document.querySelectorAll(selector)) {
        host.append(h("span", { class: `action-feedback feedback ${f.ok ? "ok" : "error"}`, role: "status" }, f.text));
      }
    }
  }

  function tell(button, text, ok) {
    const key = feedbackKey(button);
    if (!key) { banner(text, !ok); return; }
    feedbacks.set(key, { text, ok, until: Date.now() + FEEDBACK_MS });
    attachFeedback();
    setTimeout(attachFeedback, FEEDBACK_MS + 50);
  }

  async function post(url, button) {
    if (button) button.disabled = true;
    try {
      const response = await fetch(url, { method: "POST", credentials: "same-origin",
                                          headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
        tell(button, `Refused: ${message}`, false);
        return null;
      }
      const run = body && body.job_id ? `run ${body.job_id}: ` : "";
      tell(button, `${run}${body && body.message ? body.message : "done"}`, true);
      return body;
    } catch (error) {
      tell(button, `Request failed: ${error.message}`, false);
      return null;
    } finally {
      if (button) button.disabled = false;
      refresh();
    }
  }

  function scheduleAction(name, action, button) {
    return post(`${urls.urlSchedules}${encodeURIComponent(name)}/${action}`, button);
  }

  async function cancelRun(run, button) {
    const verb = run.status === "started" ? "Stop" : "Cancel";
    if (!window.confirm(`${verb} ${run.job_name} run ${run.job_id}?`)) return;
    const body = await post(`${urls.urlRuns}${encodeURIComponent(run.job_id)}/cancel`, button);
    if (body && !document.getElementById("search-result").hidden) search(run.job_id);
  }

  function cancelButton(run) {
    if (!run.active) return null;
    const verb = run.status === "started" ? "Stop" : "Cancel";
    return h("button", { type: "button", class: "danger", dataset: { action: verb.toLowerCase(), run: run.job_id },
                         onclick: (event) => cancelRun(run, event.currentTarget) }, verb);
  }

  // An ended, unsuccessful run can be retried: a new run linked to it; the failed run keeps its record.
  const RETRYABLE = new Set(["failed", "stopped", "canceled", "skipped"]);

  async function retryRun(run, button) {
    if (!window.confirm(`Retry ${run.job_name} run ${run.job_id}? A new run is queued; this one keeps its record.`)) return;
    const note = button.parentNode.querySelector(".retry-feedback");
    button.disabled = true;
    note.className = "retry-feedback muted";
    note.replaceChildren(`retrying ${run.job_id}…`);
    try {
      const response = await fetch(`${urls.urlRuns}${encodeURIComponent(run.job_id)}/retry`,
                                   { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        note.className = "retry-feedback error";
        note.replaceChildren(`Refused: ${body && body.error ? body.error.message : `HTTP ${response.status}`}`);
        return;
      }
      note.className = "retry-feedback ok";
      note.replaceChildren(`retried as run `, runLink(body.job_id), ` (${body.status})`);
    } catch (error) {
      note.className = "retry-feedback error";
      note.replaceChildren(`Request failed: ${error.message}`);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  function retryButton(run) {
    if (run.active || !RETRYABLE.has(run.status)) return null;
    return h("span", { class: "retry" },
      h("button", { type: "button", dataset: { action: "retry", run: run.job_id },
                    onclick: (event) => retryRun(run, event.currentTarget) }, "Retry"),
      " ", h("span", { class: "retry-feedback", role: "status", "aria-live": "polite" }));
  }

  // --- cards -----------------------------------------------------------------------------------
  function renderJobs(jobs) {
    const windowCells = (w, first) => [
      h("td", { class: `num${first ? " sep" : ""}` }, w.runs),
      h("td", { class: `num ${rateClass(w.success_rate)}`, title: `${w.success} finished, ${w.failure} failed or stopped` },
        fmtPercent(w.success_rate)),
      h("td", { class: "num" }, fmtDuration(w.duration_p50)),
      h("td", { class: "num" }, fmtDuration(w.duration_p95)),
    ];
    const outcome = (o, label) => (o ? h("span", { class: "muted" }, `${label} `, runLink(o.job_id), ` ${fmtAge((serverNow - Date.parse(o.ended_at)) / 1000)}`)
      : h("span", { class: "muted" }, `${label} never`));
    const rows = Object.entries(jobs).map(([name, job]) =>
      h("tr", { dataset: { job: name } },
        h("td", null, h("strong", null, name), h("br"), h("a", { href: rqJobs(job.queue, "queued"), class: "muted" }, `queue ${job.queue}`)),
        windowCells(job["24h"], true), windowCells(job["7d"], true),
        h("td", { class: "outcomes sep" }, outcome((lastOutcomes[name] || {}).last_success, "✓"), h("br"),
          outcome((lastOutcomes[name] || {}).last_failure, "✗"))));
    const cols = [["runs", "num sep"], ["success", "num"], ["p50", "num"], ["p95", "num"]];
    fill("card-jobs",
      table([["job", ""], ...cols, ...cols, ["last success / failure", "sep"]], rows,
        [["", 1], ["last 24 h", 4, "sep"], ["last 7 d", 4, "sep"], ["", 1, "sep"]]),
      h("p", { class: "muted" }, "Success rate: finished ÷ (finished + failed + stopped). Durations: finished runs, start to end."));
  }

  function renderChart(data) {
    const hours = data.hours;
    const series = data.series;
    const totals = hours.map((_, i) => series.finished[i] + series.failed[i] + series.other[i]);
    const max = Math.max(1, ...totals);
    const width = 960, height = 190, left = 34, bottom = 22, top = 8;
    const plotH = height - bottom - top;
    const step = (width - left - 4) / hours.length;
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": `runs per hour, ${totals.reduce((a, b) => a + b, 0)} in 24 h` });
    svg.append(s("line", { x1: left, y1: top + plotH + 0.5, x2: width, y2: top + plotH + 0.5, class: "axis" }));
    svg.append(s("line", { x1: left, y1: top, x2: width, y2: top, class: "axis" }));
    svg.append(s("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, String(max)));
    svg.append(s("text", { x: left - 6, y: top + plotH, "text-anchor": "end" }, "0"));
    hours.forEach((iso, i) => {
      const x = left + i * step + 2;
      const group = s("g", { "data-hour": iso });
      let y = top + plotH;
      for (const kind of ["finished", "failed", "other"]) {
        const value = series[kind][i];
        if (!value) continue;
        const barH = (value / max) * plotH;
        y -= barH;
        group.append(s("rect", { x, y, width: Math.max(1, step - 4), height: barH, class: `bar-${kind}` }));
      }
      group.append(s("title", null, `${fmtTime(iso)} ${clock.zone()}: ${series.finished[i]} finished, ${series.failed[i]} failed/stopped, ${series.other[i]} other`));
      svg.append(group);
      if (i % 3 === 0) svg.append(s("text", { x: x + (step - 4) / 2, y: height - 6, "text-anchor": "middle" }, clock.hour(iso) + "h"));
    });
    const total = totals.reduce((a, b) => a + b, 0);
    fill("card-chart", h("div", { class: "chart" }, svg),
      h("div", { class: "legend" }, h("span", { class: "finished" }, "finished"), h("span", { class: "failed" }, "failed / stopped"),
        h("span", { class: "other" }, "queued, running, canceled, skipped"), h("span", { id: "chart-total" }, `${total} runs in 24 h`)));
  }

  function renderQueues(queues) {
    const registries = ["queued", "started", "scheduled", "deferred", "failed", "finished", "canceled"];
    const rows = Object.entries(queues).map(([name, counts]) =>
      h("tr", { dataset: { queue: name } },
        h("td", null, h("a", { href: rqJobs(name, "queued") }, name)),
        registries.map((r) => h("td", { class: `num${r === "failed" && counts[r] ? " nonzero-bad" : ""}`, dataset: { registry: r } },
          counts[r] ? h("a", { href: rqJobs(name, r) }, counts[r]) : "0"))));
    fill("card-queues", table([["queue", ""], ...registries.map((r) => [r, "num"])], rows));
  }

  function renderWorkers(workers) {
    if (!workers.length) {
      fill("card-workers", h("p", { class: "muted" }, "No workers registered."));
      return;
    }
    const rows = workers.map((w) =>
      h("tr", { dataset: { worker: w.name } },
        h("td", null, h("span", { class: "mono" }, w.name), h("br"), h("span", { class: "muted" }, w.queues.join(", "))),
        h("td", null, badge(w.state), w.gone ? [h("br"), h("span", { class: "muted" }, "no longer listed by RQ")] : null),
        h("td", null, w.current_job
          ? [w.current_job_exists ? h("a", { href: rqJob(w.current_job), class: "mono" }, w.current_job)
                                  : h("span", { class: "mono" }, w.current_job), h("br"),
             h("span", { class: "muted" }, w.current_job_description || "")]
          : h("span", { class: "muted" }, "–")),
        h("td", { class: "num", title: w.last_heartbeat || "" }, fmtAge(w.heartbeat_age_seconds)),
        h("td", { class: "num", title: w.resources_age_seconds === null ? "not published yet" : `sampled ${fmtAge(w.resources_age_seconds)}` },
          w.cpu_percent === null ? "–" : `${w.cpu_percent.toFixed(1)} %`),
        h("td", { class: "num" }, fmtBytes(w.rss_bytes))));
    fill("card-workers", table(["worker", "state", "current job", ["heartbeat", "num"], ["CPU", "num"], ["RSS", "num"]], rows));
  }

  function renderSchedules(schedules, skips) {
    const rows = schedules.map((sc) => {
      const skip = (skips || {})[sc.name];
      const toggle = sc.paused
        ? h("button", { type: "button", dataset: { schedule: sc.name, action: "resume" },
                        onclick: (e) => scheduleAction(sc.name, "resume", e.currentTarget) }, "Resume")
        : h("button", { type: "button", dataset: { schedule: sc.name, action: "pause" },
                        onclick: (e) => scheduleAction(sc.name, "pause", e.currentTarget) }, "Pause");
      const run = h("button", { type: "button", dataset: { schedule: sc.name, action: "run" },
                                onclick: (e) => scheduleAction(sc.name, "run", e.currentTarget) }, "Run now");
      const next = timeCell(sc.next_run);
      if (sc.paused && sc.next_run) next.append(h("br"), h("span", { class: "muted" }, "skipped while paused"));
      return h("tr", { dataset: { schedule: sc.name } },
        h("td", null, h("strong", null, sc.name), h("br"), h("span", { class: "muted" }, `queue ${sc.queue}`)),
        h("td", null, h("code", null, sc.cron), " ", h("span", { class: "muted" }, sc.timezone)),
        h("td", { class: "state" }, sc.paused === null ? badge("unknown") : sc.paused ? badge("paused") : badge("active"),
          sc.state_note ? [h("br"), h("span", { class: "muted state-note" }, sc.state_note)]
            : sc.registered ? null : [h("br"), h("span", { class: "muted" }, "not registered yet")]),
        next,
        timeCell(sc.last_run),
        h("td", null, sc.last_status ? badge(sc.last_status) : h("span", { class: "muted" }, "–"),
          sc.last_run_id ? [h("br"), runLink(sc.last_run_id)] : null),
        h("td", { class: "skips", dataset: { skipped: skip ? skip.count : 0 } },
          !skip || !skip.count ? h("span", { class: "muted" }, "none")
            : [`${skip.count} skipped`, h("br"), h("span", { class: "muted" },
              `last ${fmtTime(skip.last.slot)}: ${skip.last.reason || "skipped"}`)]),
        h("td", { class: "actions" }, toggle, run));
    });
    fill("card-schedules", table(["schedule", "cron", "state", `next run (${clock.zone()})`, "last scheduled run", "its status",
      "skipped slots (7 d)", ""], rows));
  }

  function runRow(run, withAction) {
    const duration = runDuration(run);
    return h("tr", { dataset: { run: run.job_id, status: run.status } },
      h("td", null, runLink(run.job_id)),
      h("td", null, run.job_name),
      h("td", null, badge(run.status), stateDetail(run)),
      h("td", null, run.trigger),
      timeCell(run.enqueued_at),
      h("td", { class: "num" }, duration === null ? (run.status === "started" ? "running" : "–") : fmtDuration(duration)),
      h("td", { class: "error" }, run.error || ""),
      withAction ? h("td", { class: "actions" }, cancelButton(run), rqJobLink(run, "rq →")) : null);
  }

  // "retrying at 14:05 UTC (attempt 2 of 4)": a run waiting for its retry is not running.
  function stateDetail(run) {
    return run.state_detail ? [h("br"), h("span", { class: "state-detail" }, run.state_detail)] : null;
  }

  // A card whose source is down says so instead of showing nothing or old figures.
  function unavailable(cardId, what) {
    fill(cardId, h("p", { class: "unavailable" }, `${what} unavailable: not shown.`));
  }

  function renderHealth(health) {
    const list = document.querySelector("#health .health-lines");
    if (!health) return;
    const lines = health.problems.length
      ? health.problems.map((p) => h("li", { class: p.severity, dataset: { kind: p.kind } }, p.message))
      : [h("li", { class: "ok", dataset: { kind: "ok" } }, "all good")];
    list.replaceChildren(...lines);
    document.getElementById("health").dataset.ok = String(health.ok);
  }

  function renderRuns(active, recent) {
    const head = ["run", "job", "status", "trigger", `enqueued (${clock.zone()})`, ["duration", "num"], "error"];
    fill("card-runs",
      h("h3", null, `Queued and running (${active.length})`),
      active.length ? table([...head, ""], active.map((r) => runRow(r, true))) : h("p", { class: "muted" }, "Nothing queued or running."),
      h("h3", null, "Recent runs"),
      recent.length ? table([...head, ""], recent.map((r) => runRow(r, true))) : h("p", { class: "muted" }, "No runs yet."));
  }

  function renderAlerts(alerts) {
    const counts = (w, label) => h("div", { dataset: { window: w } }, h("span", { class: "muted" }, label),
      ["high", "medium", "low"].map((sev) => badge(`${alerts.by_severity[w][sev]} ${sev}`, sev)));
    const rows = alerts.recent.map((a) =>
      h("tr", { dataset: { alert: a.id, state: a.state } },
        timeCell(a.created_at),
        h("td", null, badge(a.severity), " ", badge(a.state)),
        h("td", null, a.type),
        h("td", null, h("a", { href: `${urls.urlAlerts}/${encodeURIComponent(a.id)}` }, h("strong", null, a.title)), h("br"),
          h("span", { class: "muted" }, a.message)),
        h("td", null, a.subject),
        h("td", { class: "num" }, a.occurrences),
        h("td", null, a.last_job_id || a.job_id ? runLink(a.last_job_id || a.job_id) : "–")));
    fill("card-alerts", h("div", { class: "counts" }, counts("24h", "last 24 h"), counts("7d", "last 7 d"),
      h("a", { href: `${urls.urlAlerts}?state=open` }, "open alerts →"), h("a", { href: urls.urlAlerts }, "all alerts →")),
      rows.length ? table([`created (${clock.zone()})`, "severity, state", "type", "alert", "subject", ["seen", "num"], "latest run"], rows)
        : h("p", { class: "muted" }, "No alerts."));
  }

  function renderReport(report) {
    if (!report) {
      fill("card-report", h("p", { class: "muted" }, "No daily report yet (the daily-summary job stores one a day)."));
      return;
    }
    const pairs = (obj) => Object.entries(obj || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
    const runs = Object.entries(report.runs || {}).map(([job, byStatus]) => h("li", null, `${job}: ${pairs(byStatus)}`));
    fill("card-report",
      h("p", null, h("strong", null, `${report.date} (UTC)`), " ", h("span", { class: "muted" }, `stored ${fmtTime(report.created_at)} by `),
        report.job_id ? runLink(report.job_id) : "–"),
      h("p", null, `${report.alerts.total} alerts: `, ["high", "medium", "low"].map((sev) =>
        badge(`${(report.alerts.by_severity || {})[sev] || 0} ${sev}`, sev))),
      h("p", { class: "muted" }, `by type: ${pairs(report.alerts.by_type)}; by source: ${pairs(report.alerts.by_source)}`),
      h("p", { id: "report-delivery", class: report.delivery && report.delivery.state === "failed" ? "nonzero-bad" : "muted" },
        !report.delivery ? "webhook: not recorded"
          : report.delivery.state === "delivered" ? `webhook: delivered ${fmtTime(report.delivery.at)}`
          : report.delivery.state === "failed" ? `webhook: NOT delivered (${report.delivery.error || "error"}) ${fmtTime(report.delivery.at)}; the run retries`
          : "webhook: not configured (SUMMARY_WEBHOOK_URL)"),
      runs.length ? h("ul", null, runs) : h("p", { class: "muted" }, "No runs that day."));
  }

  // Forecast accuracy: MASE (left axis) and P10-P90 coverage (right axis, 0-1) per scored run.
  function renderAccuracy(runs) {
    if (!runs || !runs.length) {
      fill("card-accuracy", h("p", { class: "muted" }, "No forecast scored yet: a run is scored once its horizon has passed."));
      return;
    }
    const width = 960, height = 170, left = 40, right = 40, top = 8, bottom = 22;
    const plotW = width - left - right, plotH = height - top - bottom;
    const mases = runs.map((r) => r.mase).filter((v) => v !== null);
    const maxMase = Math.max(1.5, ...mases);
    const x = (i) => left + (runs.length === 1 ? plotW / 2 : (i * plotW) / (runs.length - 1));
    const path = (key, scale) => runs.map((r, i) => (r[key] === null ? null : [x(i), top + plotH - scale(r[key]) * plotH]))
      .filter(Boolean).map(([px, py], i) => `${i ? "L" : "M"}${px.toFixed(1)},${py.toFixed(1)}`).join(" ");
    const last = runs[runs.length - 1];
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img",
                           "aria-label": `forecast accuracy of ${runs.length} scored runs` });
    svg.append(s("line", { x1: left, y1: top + plotH + 0.5, x2: width - right, y2: top + plotH + 0.5, class: "axis" }));
    const one = top + plotH - plotH / maxMase;
    svg.append(s("line", { x1: left, y1: one, x2: width - right, y2: one, class: "axis ref" }));
    svg.append(s("text", { x: left - 6, y: one + 4, "text-anchor": "end" }, "1"));
    svg.append(s("text", { x: left - 6, y: top + 10, "text-anchor": "end" }, maxMase.toFixed(1)));
    svg.append(s("text", { x: width - right + 6, y: top + 10 }, "100%"));
    svg.append(s("text", { x: width - right + 6, y: top + plotH }, "0%"));
    svg.append(s("path", { d: path("mase", (v) => v / maxMase), class: "line-mase" }));
    svg.append(s("path", { d: path("coverage", (v) => v), class: "line-coverage" }));
    runs.forEach((r, i) => {
      const g = s("g", { "data-horizon": r.horizon_start });
      g.append(s("circle", { cx: x(i), cy: top + plotH - ((r.mase ?? 0) / maxMase) * plotH, r: 2.5, class: "dot-mase" }));
      g.append(s("title", null, `${r.horizon_start}: MASE ${r.mase === null ? "–" : r.mase.toFixed(3)}, coverage ${fmtPercent(r.coverage)} (${r.points} line-days)`));
      svg.append(g);
    });
    svg.append(s("text", { x: left, y: height - 6 }, runs[0].horizon_start));
    svg.append(s("text", { x: width - right, y: height - 6, "text-anchor": "end" }, last.horizon_start));
    fill("card-accuracy", h("div", { class: "chart" }, svg),
      h("div", { class: "legend" }, h("span", { class: "mase" }, "MASE (below 1: better than the weekly seasonal naive in sample)"),
        h("span", { class: "coverage" }, "P10–P90 coverage (target 80%)"),
        h("span", { id: "accuracy-latest" }, `latest ${last.horizon_start}: MASE ${last.mase === null ? "–" : last.mase.toFixed(3)}, coverage ${fmtPercent(last.coverage)}`)));
  }

  let lastData = null;
  document.addEventListener("dashboard:timezone", () => { if (lastData) render(lastData); });

  let lastOutcomes = {};

  function render(data) {
    lastData = data;
    lastOutcomes = data.last_outcomes || {};
    serverNow = Date.parse(data.generated_at) || Date.now();
    const down = data.unavailable || [];
    const db = down.includes("database") ? "Database" : null;
    const rd = down.includes("redis") ? "Redis" : null;
    renderHealth(data.health);
    // Each part is drawn from its own source: with Redis down the database's parts still show.
    const part = (value, source, cardId, draw) => (source && (value === null || value === undefined) ? unavailable(cardId, source) : draw());
    part(data.jobs, db, "card-jobs", () => renderJobs(data.jobs));
    part(data.runs_per_hour, db, "card-chart", () => renderChart(data.runs_per_hour));
    part(data.queues, rd, "card-queues", () => renderQueues(data.queues));
    part(data.workers, rd, "card-workers", () => renderWorkers(data.workers));
    part(data.schedules, db, "card-schedules", () => renderSchedules(data.schedules, data.skipped_slots));
    part(data.recent_runs, db, "card-runs", () => renderRuns(data.active_runs, data.recent_runs));
    part(data.alerts, db, "card-alerts", () => renderAlerts(data.alerts));
    if (db && !data.daily_report) unavailable("card-report", db); else renderReport(data.daily_report);
    part(data.forecast_accuracy, db, "card-accuracy", () => renderAccuracy(data.forecast_accuracy));
    root.dataset.generatedAt = data.generated_at;
    root.dataset.unavailable = down.join(" ");
    lastGenerated = data.generated_at;
    showUpdated();
    attachFeedback();
  }

  function showUpdated() {
    const node = document.getElementById("refreshed");
    if (!lastGenerated) {
      if (Date.now() - lastSuccess > staleMs) {
        node.textContent = "⚠ stale: the page could not load its figures";
        node.classList.add("stale");
        node.dataset.stale = "true";
      }
      return;
    }
    const at = `${clock.format(lastGenerated, true)} ${clock.zone()}`;
    const age = Date.now() - lastSuccess;
    const stale = age > staleMs;
    node.textContent = stale ? `⚠ stale: no update for ${fmtAge(age / 1000).replace(" ago", "")}; figures from ${at}` : `updated ${at}`;
    node.classList.toggle("stale", stale);
    node.dataset.stale = String(stale);
  }

  async function refresh() {
    if (loading) {
      again = true; // an action finished during a refresh: load once more afterwards
      return;
    }
    loading = true;
    const abort = new AbortController();
    const hung = setTimeout(() => abort.abort(), staleMs);  // a hung request must not block every later refresh
    try {
      const response = await fetch(urls.urlData, { headers: { Accept: "application/json" }, cache: "no-store",
                                                   credentials: "same-origin", signal: abort.signal });
      const body = await response.json().catch(() => null);
      if (!response.ok || !body) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
      lastSuccess = Date.now();
      render(body);
      root.dataset.loaded = "true";
      if (document.getElementById("banner").dataset.kind === "refresh") banner("");
    } catch (error) {
      const why = error.name === "AbortError" ? `no answer in ${Math.round(staleMs / 1000)} s` : error.message;
      banner(`Could not refresh: ${why} (showing the last figures)`, true, "refresh");
    } finally {
      clearTimeout(hung);
      loading = false;
      if (again) {
        again = false;
        refresh();
      }
    }
  }

  // --- run search --------------------------------------------------------------------------------
  function runDetails(run) {
    const field = (label, value) => [h("dt", null, label), h("dd", null, value)];
    return h("div", { class: "search-hit", dataset: { run: run.job_id, status: run.status } },
      h("dl", { class: "run" },
        field("run", h("span", { class: "mono" }, run.job_id)),
        field("job", run.job_name),
        field("status", [badge(run.status), stateDetail(run)]),
        field("trigger", run.trigger),
        run.retry_of ? field("retry of", runLink(run.retry_of)) : null,
        field("attempts", run.attempts),
        field("enqueued", fmtTime(run.enqueued_at)),
        field("started", fmtTime(run.started_at)),
        field("ended", fmtTime(run.ended_at)),
        field("duration", runDuration(run) === null && run.status === "started" ? "running" : fmtDuration(runDuration(run))),
        run.error ? field("error", h("pre", { class: "error" }, run.error)) : null,
        run.result ? field("result", h("pre", null, JSON.stringify(run.result, null, 2))) : null),
      h("p", null, cancelButton(run), retryButton(run), " ",
        h("a", { href: runPage(run.job_id), class: "run-page-link" }, "open the run's page →"),
        " ", rqJobLink(run, "open in rq-dashboard →")));
  }

  async function search(query) {
    const card = document.getElementById("search-result");
    const body = card.querySelector(".body");
    card.hidden = false;
    body.replaceChildren(h("p", { class: "muted" }, `searching ${query}…`));
    try {
      const response = await fetch(`${urls.urlSearch}?q=${encodeURIComponent(query)}`,
                                   { headers: { Accept: "application/json" }, credentials: "same-origin" });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        body.replaceChildren(h("p", { class: "banner error" }, data && data.error ? data.error.message : `HTTP ${response.status}`));
        return;
      }
      body.replaceChildren(...(data.runs.length ? data.runs.map(runDetails)
        : [h("p", { class: "muted" }, `No run with an id starting with ${query}.`)]));
    } catch (error) {
      body.replaceChildren(h("p", { class: "banner error" }, `Search failed: ${error.message}`));
    }
  }

  document.getElementById("search").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = event.currentTarget.elements.q.value.trim();
    if (query) search(query);
  });
  document.getElementById("search-close").addEventListener("click", () => {
    document.getElementById("search-result").hidden = true;
  });

  // Old `#run-<id>` links (bookmarks, chat messages) open the run's page.
  const anchored = /^#run-([A-Za-z0-9_-]{1,64})$/.exec(window.location.hash);
  if (anchored) {
    window.location.replace(runPage(anchored[1]));
    return;
  }

  refresh();
  setInterval(() => { if (!document.hidden) refresh(); }, refreshMs);
  setInterval(showUpdated, 1000);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
})();
