// search.js: "/" anywhere outside a text field focuses the header search box (#search-box).
// The box is a plain GET form to /search: it works without this file.
(() => {
  "use strict";
  const typing = (el) =>
    el instanceof Element &&
    (el.isContentEditable || el.closest("input, textarea, select, [contenteditable]") !== null);

  document.addEventListener("keydown", (e) => {
    if (e.key !== "/" || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    if (e.defaultPrevented || typing(e.target)) return;
    const box = document.getElementById("search-box");
    if (!box) return;
    e.preventDefault(); // don't type the "/" into the box
    box.focus();
    box.select();
  });

  // Escape leaves the box, so "/" and the page's own keys work again.
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && e.target instanceof Element && e.target.id === "search-box") {
      e.target.blur();
    }
  });
})();
