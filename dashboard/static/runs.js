// The run page's actions and live refresh (the page itself is rendered and escaped on the server).
// Actions are same-origin POSTs; their outcome is shown next to the buttons, names the run, and
// clears itself. While the run is active the page re-reads itself and swaps in the fresh parts:
// they come from this same server-rendered page (escaped there), parsed as an inert document.
"use strict";

(() => {
  // The run list's filters: fields left empty stay out of the URL, so a shared URL is short.
  const filters = document.getElementById("run-filters");
  if (filters) {
    filters.addEventListener("submit", () => {
      for (const field of filters.elements) if (field.name && !field.value.trim()) field.disabled = true;
      // a page restored from the back/forward cache gets its fields back
      window.addEventListener("pageshow", () => { for (const field of filters.elements) field.disabled = false; },
                              { once: true });
    });
  }
})();

(() => {
  const root = document.getElementById("run-page");
  if (!root) return;
  const runId = root.dataset.runId;
  const REFRESH_MS = 4000;
  const FEEDBACK_MS = 8000;
  const LIVE_PARTS = ["run-live-head", "run-live-summary", "run-action-buttons", "run-live"];
  let feedbackTimer = null;
  let refreshing = false;

  // `parts`: strings (inserted as text) and nodes built here (a link to a new run).
  function feedback(parts, isError) {
    const node = document.getElementById("run-feedback");
    node.replaceChildren(...[].concat(parts));
    node.className = isError ? "feedback error" : "feedback ok";
    node.hidden = false;
    clearTimeout(feedbackTimer);
    feedbackTimer = setTimeout(() => {
      node.hidden = true;
      node.textContent = "";
    }, FEEDBACK_MS);
  }

  const ACTIONS = {
    stop: { url: () => root.dataset.urlCancel, ask: "Stop", done: "stop requested" },
    cancel: { url: () => root.dataset.urlCancel, ask: "Cancel", done: "canceled" },
    retry: { url: () => root.dataset.urlRetry, ask: "Retry", done: "retry queued" },
  };

  async function act(button) {
    const action = ACTIONS[button.dataset.action];
    if (!action || !action.url()) return;
    if (!window.confirm(`${action.ask} run ${runId}?`)) return;
    button.disabled = true;
    try {
      const response = await fetch(action.url(), { method: "POST", credentials: "same-origin",
                                                    headers: { Accept: "application/json" } });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
        feedback(`Run ${runId}: ${button.dataset.action} refused: ${message}`, true);
      } else if (button.dataset.action === "retry" && body && body.job_id) {
        const link = document.createElement("a");
        link.href = root.dataset.urlSelf.replace(/[^/]+$/, encodeURIComponent(body.job_id));
        link.className = "mono";
        link.id = "run-feedback-new-run";
        link.textContent = body.job_id;
        feedback([`Run ${runId}: retried as run `, link, body.status ? ` (${body.status})` : ""], false);
      } else {
        feedback(`Run ${runId}: ${body && body.message ? body.message : action.done}`, false);
        root.dataset.active = "true"; // follow the outcome until the run has ended
      }
    } catch (error) {
      feedback(`Run ${runId}: ${button.dataset.action} failed: ${error.message}`, true);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("#run-action-buttons button[data-action]");
    if (button) act(button);
  });

  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      const response = await fetch(root.dataset.urlSelf, { credentials: "same-origin", cache: "no-store",
                                                           headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const freshRoot = fresh.getElementById("run-page");
      if (!freshRoot) return;
      // Tracebacks the reader opened stay open.
      const open = new Set([...document.querySelectorAll("article[data-attempt] details[open]")]
        .map((d) => d.closest("article").dataset.attempt));
      for (const article of fresh.querySelectorAll("article[data-attempt]")) {
        const details = article.querySelector("details");
        if (details && open.has(article.dataset.attempt)) details.open = true;
      }
      for (const id of LIVE_PARTS) {
        const now = document.getElementById(id);
        const next = fresh.getElementById(id);
        if (now && next) now.replaceWith(document.adoptNode(next));
      }
      root.dataset.active = freshRoot.dataset.active;
      root.dataset.refreshedAt = String(Date.now());
    } catch (error) {
      // keep what is shown; the next tick tries again
    } finally {
      refreshing = false;
    }
  }

  setInterval(() => {
    if (!document.hidden && root.dataset.active === "true") refresh();
  }, REFRESH_MS);
})();
