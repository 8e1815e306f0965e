// watch_list.js: the current watch list, kept in this browser (localStorage), so a watch
// starts from anywhere:
// - the header's "watch" link (#nav-watch) opens it and shows its size;
// - a machine page's watch button ([data-watch-toggle]) adds or removes its machine;
// - in a list, "x" picks the selected row (keys.js), and "watch these" opens the watch
//   list of the picked machines.
// The URL is the state: opening /watch?ids=... makes that list the current one. Without
// JavaScript the header link opens an empty watch list and the machine page's button
// the watch list of that machine alone.
(() => {
  "use strict";
  const KEY = "webug.watch";
  const ID = /^[0-9a-f-]{4,36}$/;

  const read = () => {
    try {
      const ids = JSON.parse(localStorage.getItem(KEY) || "[]");
      return Array.isArray(ids) ? ids.filter((id) => typeof id === "string" && ID.test(id)) : [];
    } catch {
      return []; // storage refused (privacy settings): no current list
    }
  };
  const write = (ids) => {
    try {
      localStorage.setItem(KEY, JSON.stringify(ids));
    } catch {
      // not kept: this page still shows it
    }
    render(ids);
  };

  // The watch list's URL, from the header link's own (the server spells URLs).
  const watchUrl = (ids) => {
    const base = document.getElementById("nav-watch")?.dataset.base;
    return base ? base + (ids.length ? "?ids=" + ids.join(",") : "") : null;
  };

  const render = (ids = read()) => {
    const nav = document.getElementById("nav-watch");
    if (nav) {
      nav.href = watchUrl(ids);
      const count = nav.querySelector(".watch-count");
      if (count) {
        count.textContent = String(ids.length);
        count.hidden = ids.length === 0;
      }
      nav.title = ids.length ? `the watch list: ${ids.length} machine${ids.length === 1 ? "" : "s"}` : "watch machines";
    }
    document.querySelectorAll("[data-watch-toggle]").forEach((button) => {
      const on = ids.includes(button.dataset.watchToggle);
      button.setAttribute("role", "button");
      button.setAttribute("aria-pressed", String(on));
      button.textContent = on ? "★ watching" : "☆ watch";
      button.title = on ? "in the watch list (the header's watch link opens it); click to remove" : "add to the watch list";
    });
  };

  // The machine page's button: add or remove its machine (a plain click; a middle or
  // modified click opens its watch list alone, as without JavaScript).
  document.addEventListener("click", (e) => {
    const button = e.target instanceof Element && e.target.closest("[data-watch-toggle]");
    if (!button || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    const id = button.dataset.watchToggle;
    const ids = read();
    write(ids.includes(id) ? ids.filter((i) => i !== id) : [...ids, id]);
  });

  // --- picking rows of a list ----------------------------------------------------------
  const PICKED = "picked";
  const picked = new Set();
  const machineOf = (row) => {
    const own = /^[mw]-([0-9a-f-]{36})$/.exec(row.id || "");
    if (own) return own[1];
    for (const link of row.querySelectorAll("a[href]")) {
      const path = new URL(link.href, location.href).pathname;
      const named = /\/machine\/([0-9a-f-]{36})$/.exec(path);
      if (named) return named[1];
    }
    return null;
  };
  const bar = () => {
    let el = document.getElementById("pick-bar");
    if (!el) {
      el = document.createElement("div");
      el.id = "pick-bar";
      el.className = "pick-bar";
      el.setAttribute("role", "region");
      el.setAttribute("aria-label", "picked rows");
      const count = document.createElement("span");
      count.className = "pick-count";
      const open = document.createElement("button");
      open.type = "button";
      open.id = "watch-picked";
      open.textContent = "watch these";
      open.addEventListener("click", () => {
        const ids = [...picked];
        write(ids);
        location.assign(watchUrl(ids));
      });
      const clear = document.createElement("button");
      clear.type = "button";
      clear.textContent = "clear";
      clear.addEventListener("click", () => {
        picked.clear();
        markPicked();
      });
      el.append(count, open, clear);
      document.body.append(el);
    }
    return el;
  };
  const markPicked = () => {
    document.querySelectorAll("main table.grid > tbody > tr").forEach((row) => {
      const id = machineOf(row);
      row.classList.toggle(PICKED, id !== null && picked.has(id));
    });
    if (!picked.size && !document.getElementById("pick-bar")) return;
    const el = bar();
    el.hidden = picked.size === 0;
    el.querySelector(".pick-count").textContent =
      `${picked.size} machine${picked.size === 1 ? "" : "s"} picked (x)`;
  };
  // keys.js: "x" on the selected row.
  document.addEventListener("webug:pick", (e) => {
    const id = e.detail?.row ? machineOf(e.detail.row) : null;
    if (!id) return;
    if (picked.has(id)) picked.delete(id);
    else picked.add(id);
    markPicked();
  });
  // A poll's morph puts back the server's class attribute.
  document.addEventListener("htmx:after:swap", () => { if (picked.size) markPicked(); });

  // --- the URL is the state ----------------------------------------------------------
  const start = () => {
    const shown = document.querySelector("[data-watch-ids]");
    const ids = shown ? shown.dataset.watchIds.split(",").filter((id) => ID.test(id)) : [];
    if (ids.length) write(ids);
    else render();
  };
  window.addEventListener("storage", (e) => { if (e.key === KEY) render(); }); // another tab
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
