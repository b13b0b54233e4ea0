"""A screenshot of an attention explorer page (explorer.html of `python -m minigpt interpret`),
taken in the system's headless Chromium through Playwright, with one character hovered.

    python scripts/heads_screenshot.py outputs/heads_doc/explorer.html docs/images/heads_explorer.png \
        --position 143 --head L1H2
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="an explorer.html")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--position", type=int, default=None, help="the character to hover (default: the page's own)")
    parser.add_argument("--head", default=None, help="a head to frame, as L<layer>H<head> (a click on its table row)")
    parser.add_argument("--width", type=int, default=1400, help="the window's width in pixels")
    parser.add_argument("--height", type=int, default=1000, help="the window's height in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("error: no chromium on PATH; install the chromium package")
    if not args.page.is_file():
        sys.exit(f"error: {args.page} does not exist; run python -m minigpt interpret first")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(args.page.resolve().as_uri())
        page.wait_for_selector(".card .t span")
        if args.head:
            page.click(f"#table tr[data-head='{args.head}']")
        if args.position is not None:
            page.click(f"#text span[data-pos='{args.position}']")  # a click pins the query
        page.mouse.move(0, 0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out), full_page=False)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
