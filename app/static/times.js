// times.js: every time on a page is a <time datetime> whose text is the absolute UTC time
// (app/render/formatting.py); this script makes it readable and keeps it current:
// - [data-absolute]: the absolute time, in UTC or in this browser's zone. The header's
//   UTC/local switch picks one; localStorage keeps the choice across pages and tabs.
// - time[data-relative]: "3m ago", "in 20s", rewritten every second, with the absolute
//   time on hover. The server never writes these, so a page depends on its data alone and
//   an unchanged live poll (a 304) stays current.
// - [data-updated]: when a live fragment last answered (webug.js moves it on every poll).
// - <html class="js">: shows what only makes sense with this script (the .rel notes).
// Applied on load, every second, and after every htmx swap. Without JavaScript the
// absolute UTC texts stay.
(() => {
  "use strict";
  document.documentElement.classList.add("js");
  const STORAGE_KEY = "webug.times";
  const read = () => {
    try {
      return localStorage.getItem(STORAGE_KEY) === "local" ? "local" : "utc";
    } catch {
      return "utc"; // storage refused (privacy settings): UTC, as without JavaScript
    }
  };
  let zone = read();

  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const zoneFormat = new Intl.DateTimeFormat("en-US", { timeZoneName: "short" });
  const zoneName = (date) => // "EDT", or "GMT+2" where English has no abbreviation
    zoneFormat.formatToParts(date).find((part) => part.type === "timeZoneName")?.value ?? "local";

  // The variants of formatting.absolute: "full" (the default), "time", "minutes".
  const format = (date, variant = "full") => {
    const local = zone === "local";
    const [Y, M, D, h, m, s] = local
      ? [date.getFullYear(), date.getMonth() + 1, date.getDate(),
        date.getHours(), date.getMinutes(), date.getSeconds()]
      : [date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(),
        date.getUTCHours(), date.getUTCMinutes(), date.getUTCSeconds()];
    const suffix = local ? " " + zoneName(date) : "Z";
    if (variant === "minutes") return `${pad(M)}-${pad(D)} ${pad(h)}:${pad(m)}`;
    const time = `${pad(h)}:${pad(m)}:${pad(s)}`;
    if (variant === "time") return time + suffix;
    return `${pad(Y, 4)}-${pad(M)}-${pad(D)} ${time}${suffix}`;
  };

  // "45s", "3m 20s", "2h 5m", "4d 3h": formatting.duration's words.
  const span = (seconds) => {
    let s = Math.floor(Math.abs(seconds));
    if (s < 60) return s + "s";
    let m = Math.floor(s / 60); s %= 60;
    if (m < 60) return s ? `${m}m ${s}s` : `${m}m`;
    let h = Math.floor(m / 60); m %= 60;
    if (h < 48) return m ? `${h}h ${m}m` : `${h}h`;
    const d = Math.floor(h / 24); h %= 24;
    return h ? `${d}d ${h}h` : `${d}d`;
  };
  const relative = (date, now) => {
    const delta = (date.getTime() - now) / 1000;
    return delta > 0 ? `in ${span(delta)}` : `${span(delta)} ago`;
  };

  // An ISO 8601 instant with its offset; anything else (a time without zone) is left alone.
  const instant = (text) => {
    if (!text || !/(Z|[+-]\d\d:?\d\d)$/.test(text)) return null;
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : new Date(ms);
  };
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

  // Relative texts only: what moves every second.
  const tick = (root = document) => {
    const now = Date.now();
    root.querySelectorAll("time[data-relative]").forEach((el) => {
      const date = instant(el.getAttribute("datetime"));
      if (date) setText(el, relative(date, now));
    });
  };

  const apply = (root = document) => {
    root.querySelectorAll("[data-absolute]").forEach((el) => {
      const date = instant(el.getAttribute("datetime") ?? el.dataset.datetime);
      if (date) setText(el, format(date, el.dataset.absolute || "full"));
    });
    root.querySelectorAll("time[data-relative]").forEach((el) => {
      const date = instant(el.getAttribute("datetime"));
      const title = date && format(date);
      if (title && el.title !== title) el.title = title;
    });
    tick(root);
    // A column's zone: "local", as its times may fall on either side of a DST change.
    root.querySelectorAll("[data-zone]").forEach((el) => setText(el, zone === "local" ? "local" : "UTC"));
    document.querySelectorAll(".tz-switch [data-tz]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.tz === zone));
    });
  };

  // When a live fragment last answered: now, on load and after each good poll.
  const updated = (root, date = new Date()) => {
    root.querySelectorAll("[data-updated]").forEach((el) => {
      const time = el.querySelector("time");
      if (!time) return;
      time.setAttribute("datetime", date.toISOString());
      setText(time, format(date, "time"));
      el.hidden = false;
    });
  };

  const choose = (value) => {
    zone = value === "local" ? "local" : "utc";
    try {
      localStorage.setItem(STORAGE_KEY, zone);
    } catch {
      // not kept: this page still switches
    }
    apply();
  };

  document.addEventListener("click", (e) => {
    const button = e.target instanceof Element && e.target.closest(".tz-switch [data-tz]");
    if (button) choose(button.dataset.tz);
  });
  // Another tab switched.
  window.addEventListener("storage", (e) => {
    if (e.key === STORAGE_KEY) { zone = read(); apply(); }
  });
  document.addEventListener("htmx:after:swap", (e) => {
    const root = e.target instanceof Element ? e.target : document;
    updated(root);
    apply();
  });
  const start = () => {
    document.querySelectorAll(".tz-switch").forEach((el) => { el.hidden = false; });
    updated(document);
    apply();
    setInterval(() => tick(), 1000);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // For webug.js and watch.js: times they write themselves (a poll's "updated", a log line).
  window.webugTimes = { format, apply, updated };
})();
