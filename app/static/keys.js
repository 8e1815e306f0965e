// keys.js: every keyboard shortcut, in one place; "?" lists them (partials/shortcuts.html).
//   /        focus the header search box (#search-box); Esc leaves it
//   g m/s/o/f/w/b/t  go to machines, sessions, overview, failures, work, backoffs, tags: the #shortcuts help's
//            data-go links, so the URLs are the server's (app/render/urls.py)
//   j / k    select the next / previous row of a list; Enter opens it
//   x        pick the selected row's machine for a watch list (watch_list.js)
//   p        pause or resume live updates: clicks the live bar's link, so the URL says it
// The help's checkbox turns them all off in this browser (WCAG 2.1.4), kept in localStorage.
// Keys are ignored with Ctrl, Alt or Meta, and while focus is in a field, an editor or a
// widget that takes keys itself (role=application, textbox, combobox...): those keys belong
// to it or to the screen reader. Every page works without this file: the search box is a
// plain GET form, the live bar plain links.
(() => {
  "use strict";
  const OWN_KEYS =
    "input, textarea, select, [contenteditable]:not([contenteditable='false'])," +
    " [role=application], [role=textbox], [role=combobox], [role=searchbox], [role=slider]," +
    " [role=spinbutton], [role=grid], [role=tree], [role=listbox], [role=menu]";
  const typing = (el) =>
    el instanceof Element && (el.isContentEditable || el.closest(OWN_KEYS) !== null);
  const help = () => document.getElementById("shortcuts");
  const OFF = "webug.keys-off";
  const storedOn = () => {
    try {
      return localStorage.getItem(OFF) !== "1";
    } catch {
      return true; // storage refused (privacy settings): on, as the help says by default
    }
  };
  let enabled = storedOn();
  window.addEventListener("storage", (e) => { if (e.key === OFF) enabled = storedOn(); });
  document.addEventListener("DOMContentLoaded", () => {
    const box = document.getElementById("keys-enabled");
    if (!box) return;
    box.checked = enabled;
    box.addEventListener("change", () => {
      enabled = box.checked;
      try {
        if (enabled) localStorage.removeItem(OFF);
        else localStorage.setItem(OFF, "1");
      } catch {
        // not kept: this page still follows the switch
      }
    });
  });

  const toggleHelp = () => {
    const dialog = help();
    if (!dialog) return;
    if (dialog.open) dialog.close();
    else dialog.showModal();
  };

  const focusSearch = () => {
    const box = document.getElementById("search-box");
    if (!box) return false;
    if (help()?.open) help().close(); // the modal help makes the page behind it inert
    box.focus();
    box.select();
    return true;
  };

  // "g" then a letter within this long goes somewhere.
  const CHORD_MS = 1500;
  let gPressedAt = 0;
  const go = (letter) => {
    const link = help()?.querySelector(`a[data-go="${CSS.escape(letter)}"]`);
    if (link) location.assign(link.href);
    else if (help() && !help().open) help().showModal(); // another letter: the help lists them
  };

  // --- list rows -------------------------------------------------------------------------
  // A row is a <tr> with a link in a main table.grid (machine list, sessions, search
  // results, history and work tables). It is known by its id (m-<machine>, s-<session>) or
  // its first link, so the selection survives a live poll's morph, which puts back the
  // server's class attribute: `restore` marks the same row again after every swap.
  const SELECTED = "kb-selected";
  let selected = null; // { key, index }
  const rows = () =>
    [...document.querySelectorAll("main table.grid > tbody > tr")].filter(
      (row) => row.querySelector("a[href]") && row.getClientRects().length > 0
    );
  const keyOf = (row) => row.id || row.querySelector("a[href]").getAttribute("href");
  const mark = (row) => {
    document.querySelectorAll("tr." + SELECTED).forEach((r) => {
      if (r !== row) r.classList.remove(SELECTED);
    });
    row.classList.add(SELECTED);
  };
  const move = (step) => {
    const list = rows();
    if (!list.length) return;
    const at = selected ? list.findIndex((row) => keyOf(row) === selected.key) : -1;
    const index = at < 0 ? (step > 0 ? 0 : list.length - 1)
      : Math.min(Math.max(at + step, 0), list.length - 1);
    const row = list[index];
    selected = { key: keyOf(row), index };
    mark(row);
    row.scrollIntoView({ block: "nearest" });
  };
  const restore = () => {
    if (!selected) return;
    const list = rows();
    if (!list.length) return;
    let index = list.findIndex((row) => keyOf(row) === selected.key);
    if (index < 0) index = Math.min(selected.index, list.length - 1); // gone: its place
    selected = { key: keyOf(list[index]), index };
    mark(list[index]);
  };
  document.addEventListener("htmx:after:swap", restore);
  const openSelected = () => {
    if (!selected) return false;
    const row = rows().find((r) => keyOf(r) === selected.key);
    const link = row?.querySelector("a[href]");
    if (!link) return false;
    link.click();
    return true;
  };

  const pickSelected = () => {
    const row = selected && rows().find((r) => keyOf(r) === selected.key);
    if (!row) return false;
    document.dispatchEvent(new CustomEvent("webug:pick", { detail: { row } }));
    return true;
  };

  // --- live updates ---------------------------------------------------------------------
  const toggleLive = () => {
    const link =
      document.querySelector('.live-bar a[data-live-toggle="pause"]') ||
      document.querySelector('.live-bar a[data-live-toggle="resume"]');
    if (!link) return false;
    link.click();
    return true;
  };

  // --- dispatch ---------------------------------------------------------------------------
  const KEYS = {
    "?": () => { toggleHelp(); return true; },
    "/": focusSearch,
    j: () => { move(1); return true; },
    k: () => { move(-1); return true; },
    Enter: openSelected,
    x: pickSelected,
    p: toggleLive,
  };

  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || e.defaultPrevented) return;
    if (!enabled) return;
    if (e.key === "Shift") return; // "?" is Shift+/ on many layouts
    if (e.key === "Escape" && e.target instanceof Element && e.target.id === "search-box") {
      e.target.blur(); // so the shortcuts work again
      return;
    }
    if (typing(e.target)) return;
    // Enter on a focused link or button is theirs.
    if (e.key === "Enter" && e.target instanceof Element && e.target.closest("a, button")) return;
    if (gPressedAt && Date.now() - gPressedAt < CHORD_MS && e.key.length === 1) {
      gPressedAt = 0;
      e.preventDefault();
      go(e.key);
      return;
    }
    gPressedAt = 0;
    if (e.key === "g") {
      gPressedAt = Date.now();
      return;
    }
    const action = KEYS[e.key];
    if (action && action()) e.preventDefault(); // e.g. don't type the "/" into the box
  });

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.querySelector(".keys-button");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", toggleHelp);
  });
})();
