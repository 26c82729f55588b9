// The audit page: reads /dashboard/audit/data.json with the form's filters and pages back with
// its keyset cursor. Every value is inserted as text (textContent / append of strings), never as
// HTML, so an actor name, a target or a refusal message cannot become markup.
"use strict";

(() => {
  const root = document.getElementById("audit");
  if (!root) return;
  const dataUrl = root.dataset.urlData;
  const form = document.getElementById("audit-filters");
  const body = document.querySelector("#audit-table tbody");
  const more = document.getElementById("audit-more");
  const status = document.getElementById("audit-status");
  let cursor = null;

  function timeCell(iso) {  // clock.js writes it in the reader's zone
    const td = document.createElement("td");
    const time = document.createElement("time");
    time.setAttribute("datetime", iso);
    time.dataset.clock = "seconds";
    time.textContent = `${iso.replace("T", " ").replace("Z", "").slice(0, 19)} UTC`;
    td.append(time);
    return td;
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text === null || text === undefined ? "–" : String(text);
    return td;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.dataset.entry = String(entry.id);
    const outcome = entry.outcome + (entry.reason ? ` (${entry.reason})` : "");
    tr.append(
      entry.at ? timeCell(entry.at) : cell(null),
      cell(entry.actor), cell(entry.role), cell(entry.action), cell(entry.target),
      cell(outcome, `outcome-${entry.outcome}`), cell(entry.source), cell(entry.remote_addr), cell(entry.request_id, "muted"));
    return tr;
  }

  function params() {
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form)) {
      if (!value) continue;
      // datetime-local has no zone: the form says UTC, so send it as UTC.
      query.set(key, key === "since" || key === "until" ? `${value.length === 16 ? value + ":00" : value}Z` : value);
    }
    return query;
  }

  function say(text) {
    status.hidden = !text;
    status.className = text ? "banner error" : "banner";
    status.textContent = text || "";
  }

  async function load(append) {
    const query = params();
    if (append && cursor) query.set("cursor", cursor);
    let data;
    try {
      const response = await fetch(`${dataUrl}?${query}`, { credentials: "same-origin", headers: { Accept: "application/json" } });
      data = await response.json();
      if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    } catch (error) {
      say(`Could not load the audit log: ${error.message}`);
      return;
    }
    say("");
    if (!append) body.replaceChildren();
    for (const entry of data.entries) body.append(row(entry));
    if (!body.children.length) {
      const tr = document.createElement("tr");
      const td = cell("no entries match", "muted");
      td.colSpan = 9;
      tr.append(td);
      body.append(tr);
    }
    cursor = data.next_cursor;
    more.hidden = !cursor;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    cursor = null;
    load(false);
  });
  more.addEventListener("click", () => load(true));
  load(false);
})();
