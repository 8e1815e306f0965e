// timeline.js: "now" on a machine's timeline (partials/timeline.html). The server draws
// the window from the data alone, so the page stays the same while nothing changes; this
// places the "now" line from the window's data-start / data-end and cuts the bars that
// run on (data-until-now) there; where the timeline is wider than the screen, it shows
// its recent end first. On load, after every swap, and every few seconds.
(() => {
  "use strict";
  const place = () => {
    const now = Date.now();
    document.querySelectorAll("svg[data-timeline]").forEach((svg) => {
      const start = Date.parse(svg.dataset.start);
      const end = Date.parse(svg.dataset.end);
      const x0 = Number(svg.dataset.x0);
      const x1 = Number(svg.dataset.x1);
      if (!(end > start)) return;
      const share = Math.min(Math.max((now - start) / (end - start), 0), 1);
      const x = (x0 + share * (x1 - x0)).toFixed(1);
      const line = svg.querySelector("line.now");
      if (line) {
        line.setAttribute("x1", x);
        line.setAttribute("x2", x);
        line.removeAttribute("visibility");
      }
      // A narrow screen scrolls the timeline: show its recent end first.
      const figure = svg.closest(".timeline-scroll");
      if (figure && figure.scrollWidth > figure.clientWidth && !figure.dataset.scrolled) {
        figure.scrollLeft = figure.scrollWidth;
        figure.dataset.scrolled = "1";
      }
      svg.querySelectorAll("rect[data-until-now]").forEach((bar) => {
        const left = Number(bar.getAttribute("x"));
        bar.setAttribute("width", Math.max(x - left, 2).toFixed(1));
      });
    });
  };
  document.addEventListener("htmx:after:swap", place);
  const start = () => {
    place();
    setInterval(place, 5000);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
