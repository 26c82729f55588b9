// Times on the dashboards: the browser's own zone by default, UTC at a click (remembered in this
// browser). Every page loads this before its own script and formats times with DashboardClock;
// the toggle is any element with id "tz-toggle", and elements of class "tz-label" name the zone.
// Server-rendered times are <time datetime="ISO" data-clock> (UTC text until this runs): they are
// rewritten in the chosen zone on load, on a toggle, and when a page swaps fresh parts in.
"use strict";

window.DashboardClock = (() => {
  const KEY = "dashboard.timezone";
  const localZone = (() => {
    try {
      return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    } catch (error) {
      return "local time";
    }
  })();
  let utc = false;
  try {
    utc = window.localStorage.getItem(KEY) === "utc";
  } catch (error) {
    utc = false; // storage refused (private mode): the default holds
  }
  const pad = (n) => String(n).padStart(2, "0");

  function fields(iso) {
    const date = new Date(iso);
    if (!iso || Number.isNaN(date.getTime())) return null;
    return utc
      ? [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()]
      : [date.getFullYear(), date.getMonth() + 1, date.getDate(), date.getHours(), date.getMinutes(), date.getSeconds()];
  }

  const clock = {
    isUtc: () => utc,
    zone: () => (utc ? "UTC" : localZone),
    /** "YYYY-MM-DD HH:MM" (with ":SS" when asked) in the chosen zone; "–" for nothing. */
    format(iso, withSeconds) {
      const f = fields(iso);
      if (!f) return "–";
      const text = `${f[0]}-${pad(f[1])}-${pad(f[2])} ${pad(f[3])}:${pad(f[4])}`;
      return withSeconds ? `${text}:${pad(f[5])}` : text;
    },
    /** "HH:MM" in the chosen zone. */
    timeOfDay(iso) {
      const f = fields(iso);
      return f ? `${pad(f[3])}:${pad(f[4])}` : "–";
    },
    /** The hour "HH" in the chosen zone. */
    hour(iso) {
      const f = fields(iso);
      return f ? pad(f[3]) : "–";
    },
    set(useUtc) {
      utc = Boolean(useUtc);
      try {
        window.localStorage.setItem(KEY, utc ? "utc" : "local");
      } catch (error) {
        // not remembered; this page still switches
      }
      label();
      formatTimes();
      document.dispatchEvent(new CustomEvent("dashboard:timezone"));
    },
  };

  function formatTimes(root) {
    for (const node of (root || document).querySelectorAll("time[datetime][data-clock]")) {
      const text = `${clock.format(node.getAttribute("datetime"), node.dataset.clock === "seconds")} ${clock.zone()}`;
      if (node.textContent !== text) node.textContent = text;
    }
  }
  clock.formatTimes = formatTimes;

  function label() {
    for (const node of document.querySelectorAll(".tz-label")) node.textContent = clock.zone();
    const toggle = document.getElementById("tz-toggle");
    if (toggle) {
      toggle.setAttribute("aria-pressed", String(utc));
      toggle.textContent = utc ? "UTC" : localZone;
      toggle.title = utc ? `showing UTC; click for ${localZone}` : "showing the browser's time zone; click for UTC";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    label();
    formatTimes();
    let pending = false;
    new MutationObserver(() => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; formatTimes(); });
    }).observe(document.body, { childList: true, subtree: true });
    const toggle = document.getElementById("tz-toggle");
    if (toggle) toggle.addEventListener("click", () => clock.set(!utc));
  });
  return clock;
})();
