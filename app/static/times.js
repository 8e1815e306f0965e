// times.js: absolute times in UTC (as the server renders them) or in this browser's zone.
// The header's UTC/local switch picks one; localStorage keeps the choice across pages,
// reloads and tabs. Every absolute time carries its instant (app/render/formatting.py
// `absolute`): <time datetime data-absolute[=variant]>, or data-datetime on SVG text.
// Relative times ("3m ago") stay as they are; their hover title shows the absolute time.
// Applied again after every htmx swap: a live poll puts the server's UTC text back.
(() => {
  "use strict";
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

  // An ISO 8601 instant with its offset; anything else (a time without zone) is left alone.
  const instant = (text) => {
    if (!text || !/(Z|[+-]\d\d:?\d\d)$/.test(text)) return null;
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? null : new Date(ms);
  };
  const setText = (el, text) => { if (el.textContent !== text) el.textContent = text; };

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
    // A column's zone: "local", as its times may fall on either side of a DST change.
    root.querySelectorAll("[data-zone]").forEach((el) => setText(el, zone === "local" ? "local" : "UTC"));
    document.querySelectorAll(".tz-switch [data-tz]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.tz === zone));
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
  document.addEventListener("htmx:after:swap", () => apply());
  const start = () => {
    document.querySelectorAll(".tz-switch").forEach((el) => { el.hidden = false; });
    apply();
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();

  // For webug.js: texts it writes itself (a poll's "updated", the disconnected banner).
  window.webugTimes = { format, apply };
})();
