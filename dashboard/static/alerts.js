// The alert pages (times in the reader's zone come from clock.js): acknowledge / resolve with an
// optional comment, posted as JSON; the outcome is shown next to the buttons that asked for it.
"use strict";

(() => {
  const root = document.getElementById("alerts-page") || document.getElementById("alert-page");
  if (!root) return;

  async function act(holder, action, button) {
    const id = holder.dataset.alert;
    const comment = window.prompt(action === "resolve" ? `Resolve alert ${id}: comment (optional)` : `Acknowledge alert ${id}: comment (optional)`, "");
    if (comment === null) return; // the operator changed their mind
    const feedback = holder.querySelector(".feedback");
    for (const b of holder.querySelectorAll("button")) b.disabled = true;
    feedback.className = "feedback muted";
    feedback.textContent = `${action === "resolve" ? "resolving" : "acknowledging"} alert ${id}…`;
    try {
      const response = await fetch(`${root.dataset.urlBase}/${encodeURIComponent(id)}/${action}`, {
        method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json" },
        body: JSON.stringify(comment.trim() ? { comment: comment.trim() } : {}),
      });
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new Error(body && body.error ? body.error.message : `HTTP ${response.status}`);
      feedback.className = "feedback ok";
      feedback.textContent = body.message;
      const row = holder.closest("[data-state]");
      if (row) row.dataset.state = body.alert.state;
      for (const badge of (row || root).querySelectorAll(".badge.open, .badge.acknowledged")) {
        badge.className = `badge ${body.alert.state}`;
        badge.textContent = body.alert.state;
      }
      for (const b of holder.querySelectorAll("button")) {
        b.hidden = body.alert.state === "resolved" || (b.dataset.action === "acknowledge" && body.alert.state !== "open");
      }
    } catch (error) {
      feedback.className = "feedback bad";
      feedback.textContent = `alert ${id}: ${error.message}`;
    } finally {
      for (const b of holder.querySelectorAll("button")) b.disabled = false;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest(".alert-actions button[data-action]");
    if (button) act(button.closest(".alert-actions"), button.dataset.action, button);
  });
  root.dataset.ready = "true";
})();
