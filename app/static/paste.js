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
})();
