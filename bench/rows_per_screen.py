"""How many list rows one screen shows, in Chromium, at 1440x900 and 390x844.

    .venv/bin/python bench/rows_per_screen.py [BASE_URL] [PATH ...]

Counts the rows of each page's main table whose bottom is inside the window, as loaded
(no scrolling), against a running webug (default: the demo at http://127.0.0.1:8000).
"""

from __future__ import annotations

import sys

from playwright.sync_api import sync_playwright

WINDOWS = ((1440, 900), (390, 844))
PATHS = ("/", "/?sort=backoff", "/work", "/backoffs", "/sessions")
ROWS = "main table.grid > tbody > tr, main table.machines > tbody > tr"


def main() -> None:
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    paths = sys.argv[2:] or PATHS
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        print("| page | " + " | ".join(f"{w}x{h}" for w, h in WINDOWS) + " |")
        print("|---|" + "---:|" * len(WINDOWS))
        counts: dict[str, list[int]] = {path: [] for path in paths}
        for width, height in WINDOWS:
            page = browser.new_page(viewport={"width": width, "height": height})
            for path in paths:
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                counts[path].append(page.evaluate(
                    f"[...document.querySelectorAll({ROWS!r})].filter((r) => {{"
                    " const b = r.getBoundingClientRect();"
                    f" return b.height > 0 && b.bottom <= {height}; }}).length"
                ))  # fmt: skip
            page.close()
        browser.close()
    for path, n in counts.items():
        print(f"| {path} | " + " | ".join(map(str, n)) + " |")


if __name__ == "__main__":
    main()
