// paste.js: a long paste into the header search box (an alert, log lines) is sent as a
// POST instead of a GET: proxies refuse long request lines (nginx at 8 KiB by default),
// never a body of this size. Without this file the box is a plain GET form, which
// webug itself takes up to 16 KiB of text (app/model/search.py).
(() => {
  "use strict";
  const LONG_QUERY = 4000; // characters of the encoded query string
  document.addEventListener("submit", (e) => {
    const form = e.target;
    const box = form instanceof HTMLFormElement ? form.querySelector("#search-box") : null;
    if (box && encodeURIComponent(box.value).length > LONG_QUERY) form.method = "post";
  });
  // In a text area Enter is a new line: Ctrl+Enter (⌘+Enter) submits its form, as in
  // chat and issue trackers. requestSubmit runs the form's submit handlers, as a click would.
  document.addEventListener("keydown", (e) => {
    const area = e.target;
    if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey) || e.isComposing) return;
    if (!(area instanceof HTMLTextAreaElement) || !area.form) return;
    e.preventDefault();
    area.form.requestSubmit();
  });
})();
