// watch.js: the change log of a watch list (/watch). Without it the list still polls and
// flashes what changed (webug.js); with it each change is a line of #watch-events (newest
// first, with the time it was seen), the tab's title counts the lines not yet seen, and,
// with the user's permission, each raises a browser notification.
//
// Each poll that brings new rows is compared with the rows it replaces: a row per watched
// machine (data-watch-machine; data-work and data-backoffs: process names; data-heartbeat:
// recent|stale|none|unknown; data-facts: JSON of backoff ends, workflow states and the
// newest history event per process) and an entry per token that names no machine
// (data-watch-token, data-state). The changes:
//   work started / work ended (with its result from the history: Finished, Failed, Canceled)
//   backoff set / backoff ended · workflow state changed · heartbeat lost / heartbeat returned
//   machine deleted
(() => {
  "use strict";

  const ENDS = new Set(["Finished", "Failed", "Canceled"]);
  const words = (text) => new Set((text || "").split(" ").filter(Boolean));
  const facts = (text) => {
    try {
      return JSON.parse(text || "{}");
    } catch {
      return {};
    }
  };

  const snapshot = (root) => {
    const machines = new Map();
    const tokens = new Map();
    root.querySelectorAll("[data-watch-machine]").forEach((el) => {
      const more = facts(el.dataset.facts);
      machines.set(el.dataset.watchMachine, {
        url: el.querySelector("a[href]")?.getAttribute("href") || "",
        tokens: words(el.dataset.tokens),
        work: words(el.dataset.work),
        backoffs: words(el.dataset.backoffs),
        heartbeat: el.dataset.heartbeat,
        ends: more.backoffs || {},
        workflows: more.workflows || {},
        last: more.last || {},
      });
    });
    root.querySelectorAll("[data-watch-token]").forEach((el) => {
      tokens.set(el.dataset.watchToken, el.dataset.state);
    });
    return { machines, tokens };
  };

  // The work of one process: it started, or ended with the history's word on how. Work
  // that came and went between two polls shows only as a new event in the history.
  const work = (process, was, now, add) => {
    const before = was.last[process];
    const event = now.last[process];
    const fresh = event && (!before || before[0] !== event[0] || before[1] !== event[1]);
    const result = fresh && ENDS.has(event[0]) ? event : null;
    const started = now.work.has(process) && !was.work.has(process);
    const ended = was.work.has(process) && !now.work.has(process);
    const unseen = !now.work.has(process) && !was.work.has(process);
    if (started || (unseen && fresh && event[0] === "Started")) {
      add("work started", process, "started");
    }
    if (ended || (unseen && result)) {
      const how = result
        ? ": " + result[0] + (result[2] ? ": " + result[2] : "")
        : ": no result in its history yet";
      add("work ended", process + how, result ? result[0].toLowerCase() : "");
    }
  };

  // What changed between two snapshots, as [{event, machine, url, detail, kind}].
  const changes = (before, after) => {
    const found = [];
    before.machines.forEach((was, id) => {
      const add = (event, detail, kind) => found.push({ event, machine: id, url: was.url, detail, kind });
      const now = after.machines.get(id);
      if (!now) {
        // Its token names no machine any more (not: a new machine now shares its prefix).
        if ([...was.tokens].some((t) => after.tokens.get(t) === "unknown")) {
          add("machine deleted", "", "deleted");
        }
        return;
      }
      const processes = new Set([...was.work, ...now.work, ...Object.keys(now.last)]);
      processes.forEach((p) => work(p, was, now, add));
      Object.entries(now.ends).forEach(([p, until]) => {
        if (was.ends[p] !== until) add("backoff set", p, "set");
      });
      was.backoffs.forEach((p) => {
        if (!now.backoffs.has(p)) add("backoff ended", p, "ended");
      });
      Object.entries(now.workflows).forEach(([name, state]) => {
        const old = was.workflows[name];
        if (old && old !== state) {
          add("workflow state changed", name + ": " + old.replace("_", " ") + " → " + state.replace("_", " "), state);
        }
      });
      const beating = (h) => h === "recent";
      const silent = (h) => h === "stale" || h === "none";
      if (beating(now.heartbeat) && silent(was.heartbeat)) add("heartbeat returned", "", "back");
      if (silent(now.heartbeat) && beating(was.heartbeat)) add("heartbeat lost", "", "lost");
    });
    return found;
  };

  const allowed = () => "Notification" in window && Notification.permission === "granted";

  // --- the title counts what was logged while the user looked elsewhere ----------------
  const baseTitle = document.title;
  let away = document.hidden || !document.hasFocus();
  let unseen = 0;
  const showCount = () => {
    document.title = unseen ? `(${unseen}) ${baseTitle}` : baseTitle;
  };
  const seen = () => {
    away = false;
    unseen = 0;
    showCount();
    // The lines stay marked a moment, so the eye finds them.
    setTimeout(() => {
      if (!away) document.querySelectorAll("#watch-events li.unseen").forEach((li) => li.classList.remove("unseen"));
    }, 8000);
  };
  window.addEventListener("blur", () => { away = true; });
  window.addEventListener("focus", seen);
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) away = true;
    else if (document.hasFocus()) seen();
  });

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
      const machine = document.createElement("a");
      machine.href = change.url;
      machine.className = "mono";
      machine.textContent = change.machine;
      const kind = document.createElement("span");
      kind.className = "event-kind " + change.kind;
      kind.textContent = change.event;
      const item = document.createElement("li");
      item.dataset.event = change.event;
      item.append(time, " ", machine, ": ", kind, change.detail ? " (" + change.detail + ")" : "");
      if (away) item.classList.add("unseen");
      list.prepend(item);
      document.getElementById("watch-events-none")?.remove();
    }
    if (away) {
      unseen += 1;
      showCount();
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
        granted: "notifications on: every change logged below",
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
