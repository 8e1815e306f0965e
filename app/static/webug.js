// webug.js: small enhancements on top of htmx. Every page works without them.
(() => {
  "use strict";

  // Elements whose data-key is new flash: the server keys what means something (a list's
  // row, or a cell of the machine list: its work, backoffs, status, tags), so a change
  // of anything else (a heartbeat, a deadline moving on) does not. A key is known with
  // its row's id, so cells need not repeat it.
  const known = new Set();
  const remember = (root, flash) => {
    root.querySelectorAll("[data-key]").forEach((el) => {
      const key = (el.closest("tr[id]")?.id ?? "") + " " + el.dataset.key;
      if (!known.has(key)) {
        known.add(key);
        if (flash) {
          el.classList.add("changed");
          setTimeout(() => el.classList.remove("changed"), 2000);
        }
      }
    });
  };
  document.addEventListener("DOMContentLoaded", () => remember(document, false));

  // A time of day as times.js shows times (UTC, or the user's zone when chosen).
  const clock = (date) =>
    window.webugTimes ? webugTimes.format(date, "time") : date.toISOString().slice(11, 19) + "Z";

  // Connection state of live fragments: say so when polls fail, instead of going stale silently.
  let lastUpdate = new Date();
  const banner = () => document.getElementById("conn-status");
  // The class turns every live dot red (webug.css) while the banner shows.
  const connected = () => {
    lastUpdate = new Date();
    document.documentElement.classList.remove("disconnected");
    const b = banner();
    if (b) { b.hidden = true; }
  };
  document.addEventListener("htmx:after:swap", () => {
    connected();
    remember(document, true);
  });
  const disconnected = (why) => {
    document.documentElement.classList.add("disconnected");
    const b = banner();
    if (!b) return;
    b.textContent = "disconnected — last update at " + clock(lastUpdate) +
      (why ? " — " + why : "") + (/retrying/.test(why) ? "" : ", retrying");
    b.hidden = false;
  };
  document.addEventListener("htmx:error", () => disconnected(""));
  // "updated HH:MM:SS" of a polled fragment moves on with every good answer, including a
  // 304 (unchanged, nothing swapped): it says the data was still true then.
  document.addEventListener("htmx:after:request", (e) => {
    const status = e.detail?.ctx?.response?.status ?? 0;
    if (status === 304) connected(); // nothing swapped, yet the server answered
    if ((status === 200 || status === 304) && e.target instanceof Element && window.webugTimes) {
      webugTimes.updated(e.target);
    }
  });
  // A 5xx error page (503 BMDB unreachable or busy, 504 query timed out, a proxy's 502) is
  // never swapped over a live fragment: keep the last good content and say what happened.
  // A 5xx that is a page of its own (the schema page after a failed refresh) is swapped.
  document.addEventListener("htmx:before:swap", (e) => {
    const ctx = e.detail.ctx;
    const status = ctx.response?.status ?? 0;
    const text = ctx.text || "";
    if (status < 500 || (text.includes('class="topbar"') && !text.includes('class="error-page"'))) {
      return;
    }
    e.preventDefault();
    const title = new DOMParser().parseFromString(text, "text/html").title;
    disconnected(title.replace(/ · webug$/, "").replace(/^\d{3} /, "") || "HTTP " + status);
  });

  // Content-Security-Policy without 'unsafe-eval': htmx compiles hx-trigger filters such as
  // [document.visibilityState === 'visible'] with Function(). Hand it these precompiled
  // ones instead; any other expression fails loudly (a page error) rather than silently.
  const EXPRESSIONS = {
    "document.visibilityState === 'visible'": () => document.visibilityState === "visible",
    "document.visibilityState === 'visible' && !document.querySelector('.live-bar .paused')":
      () => document.visibilityState === "visible" && !document.querySelector(".live-bar .paused"),
  };
  const precompiled = (isAsync) => function (...keys) {
    const body = keys.pop();
    const match = /^return \(([\s\S]*)\)$/.exec(body);
    const fn = match && EXPRESSIONS[match[1].trim()];
    if (!fn) throw new Error("webug: expression not allowed without 'unsafe-eval': " + body);
    return { call: (thisArg) => (isAsync ? Promise.resolve(fn.call(thisArg)) : fn.call(thisArg)) };
  };
  if (window.htmx) {
    htmx.registerExtension("webug-csp", {
      init: (api) => api.initSecurity(null, precompiled(false), precompiled(true)),
    });
  }

  // Facets folded behind a button on narrow screens (<details class="facets-fold">) are open on
  // wide ones: webug.css does it where the browser has ::details-content, this elsewhere.
  document.addEventListener("DOMContentLoaded", () => {
    if (CSS.supports("selector(::details-content)") || !matchMedia("(min-width: 701px)").matches) return;
    document.querySelectorAll("details.facets-fold").forEach((d) => { d.open = true; });
  });

  // The machine list's rows: one line each, or roomy (every value whole, wrapped). The
  // [data-density] button switches; localStorage keeps the choice across pages and tabs.
  const DENSITY = "webug.density";
  const density = (toggle) => {
    let roomy = false;
    try {
      roomy = localStorage.getItem(DENSITY) === "roomy";
      if (toggle) localStorage.setItem(DENSITY, (roomy = !roomy) ? "roomy" : "compact");
    } catch {
      roomy = toggle ? !document.documentElement.classList.contains("roomy") : roomy;
    }
    document.documentElement.classList.toggle("roomy", roomy);
    document.querySelectorAll("[data-density]").forEach((b) => b.setAttribute("aria-pressed", String(roomy)));
  };
  document.addEventListener("DOMContentLoaded", () => density(false));
  document.addEventListener("click", (e) => { if (e.target.closest?.("[data-density]")) density(true); });

  // Copy buttons: <button class="copy" data-copy="text">.
  document.addEventListener("click", (e) => {
    const button = e.target.closest("button.copy");
    if (!button) return;
    navigator.clipboard.writeText(button.dataset.copy).then(() => {
      const label = button.textContent;
      button.textContent = "copied";
      setTimeout(() => { button.textContent = label; }, 1200);
    });
  });
})();
