// watch.js: notifications of a watch list (/watch). Without it the list still polls and
// flashes what changed (webug.js); with it, and the user's permission, a change an
// operator waits for raises a browser notification and a line in #watch-events.
//
// Each poll that brings new rows is compared with the rows it replaces: a row per watched
// machine (data-watch-machine, with data-work / data-backoffs: process names, and
// data-heartbeat: recent|stale|none|unknown) and an entry per token that names no machine
// (data-watch-token, data-state).
(() => {
  "use strict";

  const words = (text) => new Set((text || "").split(" ").filter(Boolean));

  const snapshot = (root) => {
    const machines = new Map();
    const tokens = new Map();
    root.querySelectorAll("[data-watch-machine]").forEach((el) => {
      machines.set(el.dataset.watchMachine, {
        tokens: words(el.dataset.tokens),
        work: words(el.dataset.work),
        backoffs: words(el.dataset.backoffs),
        heartbeat: el.dataset.heartbeat,
      });
    });
    root.querySelectorAll("[data-watch-token]").forEach((el) => {
      tokens.set(el.dataset.watchToken, el.dataset.state);
    });
    return { machines, tokens };
  };

  // What changed between two snapshots, as [{event, machine, detail}].
  const changes = (before, after) => {
    const found = [];
    before.machines.forEach((was, id) => {
      const now = after.machines.get(id);
      if (!now) {
        // Its token names no machine any more (not: a new machine now shares its prefix).
        if ([...was.tokens].some((t) => after.tokens.get(t) === "unknown")) {
          found.push({ event: "machine deleted", machine: id, detail: "" });
        }
        return;
      }
      was.backoffs.forEach((p) => {
        if (!now.backoffs.has(p)) found.push({ event: "backoff ended", machine: id, detail: p });
      });
      now.work.forEach((p) => {
        if (!was.work.has(p)) found.push({ event: "work started", machine: id, detail: p });
      });
      if (now.heartbeat === "recent" && (was.heartbeat === "stale" || was.heartbeat === "none")) {
        found.push({ event: "heartbeat returned", machine: id, detail: "" });
      }
    });
    return found;
  };

  const allowed = () => "Notification" in window && Notification.permission === "granted";

  const report = (change) => {
    const text = change.event + (change.detail ? " (" + change.detail + ")" : "");
    const list = document.getElementById("watch-events");
    if (list) {
      // Its time as every other on the page: in the zone the header's switch picks.
      const now = new Date();
      const time = document.createElement("time");
      time.setAttribute("datetime", now.toISOString());
      time.dataset.absolute = "time";
      time.textContent = window.webugTimes ? webugTimes.format(now, "time") : now.toISOString();
      const item = document.createElement("li");
      item.append(time, " " + change.machine + ": " + text);
      list.prepend(item);
    }
    if (allowed()) {
      // One notification per machine and event: a newer one replaces an older one.
      new Notification("webug: " + text, {
        body: "machine " + change.machine,
        tag: change.machine + " " + change.event,
      });
    }
  };

  let before = null;
  document.addEventListener("htmx:before:swap", () => {
    const live = document.getElementById("watch-live");
    before = live ? snapshot(live) : null;
  });
  document.addEventListener("htmx:after:swap", () => {
    const live = document.getElementById("watch-live");
    if (!before || !live) return;
    changes(before, snapshot(live)).forEach(report);
    before = null;
  });

  // The permission button: shown only where the browser has notifications.
  const showPermission = () => {
    const button = document.getElementById("watch-notify");
    const state = document.getElementById("watch-notify-state");
    if (!button || !("Notification" in window)) return;
    const permission = Notification.permission;
    button.hidden = permission !== "default";
    if (state) {
      state.textContent = {
        granted: "notifications on: backoff ended, work started, heartbeat returned, machine deleted",
        denied: "notifications are blocked for this site (browser settings)",
        default: "",
      }[permission] || "";
    }
  };
  document.addEventListener("DOMContentLoaded", showPermission);
  document.addEventListener("click", (e) => {
    if (!(e.target instanceof Element) || e.target.id !== "watch-notify") return;
    Notification.requestPermission().then(showPermission);
  });
})();
