#!/usr/bin/env python3
"""Open a t2s HTML report in headless Chromium, the way a reader's browser would.

Loads the file with Debian's `chromium` (driven by Playwright over the DevTools protocol; no
browser download), waits for every image, takes a full-page screenshot, and prints a JSON
summary. Exits 1 when the page has a problem a reader would see:

- a console message of type `error`, or an uncaught page error;
- a request that failed (a figure or a stylesheet the file points to but cannot load);
- a broken image (not complete, or zero natural size) or an image with zero rendered size;
- fewer images than `--min-images`.

Usage: check_report_browser.py REPORT.html --screenshot OUT.png [--min-images N]
Chromium: $CHROMIUM, else /usr/bin/chromium.
"""
import argparse
import json
import os
import sys

from playwright.sync_api import sync_playwright

IMAGES_JS = """
() => Array.from(document.images).map((img, i) => ({
  index: i,
  alt: img.alt,
  src: img.currentSrc.slice(0, 40),
  complete: img.complete,
  natural: [img.naturalWidth, img.naturalHeight],
  rendered: [img.getBoundingClientRect().width, img.getBoundingClientRect().height],
}))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--min-images", type=int, default=1)
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium):
        sys.exit(f"{chromium} not found: install Debian's chromium (scripts/setup.sh does, "
                 f"with T2S_FOR_TESTS=1) or set CHROMIUM")
    url = "file://" + os.path.abspath(a.report)
    console_errors, page_errors, failed_requests = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            # Root in a container: no user namespaces for the sandbox; no GPU here.
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        page = browser.new_page(viewport={"width": a.width, "height": 900})
        page.on("console", lambda m: m.type == "error" and console_errors.append(m.text))
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("requestfailed", lambda r: failed_requests.append(f"{r.url[:80]}: {r.failure}"))
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        images = page.evaluate(IMAGES_JS)
        title = page.title()
        height = page.evaluate("() => document.documentElement.scrollHeight")
        page.screenshot(path=a.screenshot, full_page=True)
        browser.close()

    broken = [i for i in images
              if not i["complete"] or 0 in i["natural"] or 0 in i["rendered"]]
    problems = []
    if console_errors:
        problems.append(f"{len(console_errors)} console error(s)")
    if page_errors:
        problems.append(f"{len(page_errors)} page error(s)")
    if failed_requests:
        problems.append(f"{len(failed_requests)} failed request(s)")
    if broken:
        problems.append(f"{len(broken)} broken image(s)")
    if len(images) < a.min_images:
        problems.append(f"{len(images)} image(s), expected at least {a.min_images}")
    summary = {
        "url": url,
        "title": title,
        "page_height": height,
        "images": images,
        "broken_images": broken,
        "console_errors": console_errors,
        "page_errors": page_errors,
        "failed_requests": failed_requests,
        "screenshot": a.screenshot,
        "problems": problems,
    }
    print(json.dumps(summary, indent=1))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
