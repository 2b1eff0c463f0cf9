// retouchd dashboard: live updates (server-sent events) and the action buttons.
// The server renders every page; on news this script fetches the page's live part again
// (data-refresh on <main>) and swaps it in. Actions POST with the page's CSRF token.
"use strict";

(function () {
  const main = document.getElementById("main");
  const live = document.getElementById("live");
  const toast = document.getElementById("toast");
  const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
  let refreshTimer = null;
  let toastTimer = null;

  function show(message, bad) {
    toast.textContent = message;
    toast.className = "show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.className = ""; }, 6000);
  }

  // Fetches the live part again: at most every 300 ms, and never more than a tenth of the
  // time (a slow page, such as a name search on a huge journal, is fetched less often).
  let gap = 300;
  function refresh() {
    if (!main || !main.dataset.refresh || refreshTimer) return;
    refreshTimer = setTimeout(async () => {
      const started = performance.now();
      try {
        const answer = await fetch(main.dataset.refresh, { credentials: "same-origin" });
        if (answer.redirected || answer.status === 401) { location.reload(); return; }
        if (answer.ok) main.innerHTML = await answer.text();
      } catch (e) { /* the connection comes back by itself; the next event refreshes */ }
      gap = Math.max(300, (performance.now() - started) * 10);
      refreshTimer = null;
    }, gap);
  }

  // Which news this page shows.
  function concerns(event) {
    const page = location.pathname;
    if (page === "/") return event.type === "overview";
    if (page === "/queue") return event.type === "jobs" || event.type === "resync";
    const job = page.match(/^\/jobs\/(\d+)$/);
    if (job && event.type === "jobs") {
      return JSON.parse(event.data).some((j) => String(j.id) === job[1]);
    }
    return event.type === "resync";
  }

  if (live && window.EventSource) {
    const events = new EventSource("/api/events");
    events.onopen = () => { live.textContent = "live"; live.className = "live on"; };
    events.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
    for (const type of ["jobs", "overview", "resync"]) {
      events.addEventListener(type, (event) => { if (concerns(event)) refresh(); });
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    button.disabled = true;
    const init = { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (button.dataset.file) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify({ file: button.dataset.file });
    }
    try {
      const answer = await fetch(button.dataset.action, init);
      const body = await answer.json().catch(() => ({}));
      show(body.message || body.error || answer.statusText, !answer.ok);
    } catch (e) {
      show("The daemon cannot be reached: " + e.message, true);
    } finally {
      button.disabled = false;
      refresh();
    }
  });
})();
