// webug.js: small enhancements on top of htmx. Every page works without them.
(() => {
  "use strict";

  // Rows whose content changed get a new data-key (server fingerprint): flash them.
  const known = new Set();
  const remember = (root, flash) => {
    root.querySelectorAll("[data-key]").forEach((el) => {
      if (!known.has(el.dataset.key)) {
        known.add(el.dataset.key);
        if (flash) {
          el.classList.add("changed");
          setTimeout(() => el.classList.remove("changed"), 2000);
        }
      }
    });
  };
  document.addEventListener("DOMContentLoaded", () => remember(document, false));

  // Connection state of live fragments: say so when polls fail, instead of going stale silently.
  let lastUpdate = new Date();
  const banner = () => document.getElementById("conn-status");
  document.addEventListener("htmx:after:swap", (e) => {
    lastUpdate = new Date();
    remember(document, true);
    const b = banner();
    if (b) { b.hidden = true; }
  });
  document.addEventListener("htmx:error", () => {
    const b = banner();
    if (!b) return;
    b.textContent = "disconnected — last update at " + lastUpdate.toLocaleTimeString() + ", retrying";
    b.hidden = false;
  });

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
