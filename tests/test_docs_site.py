"""The documentation site opened as the README says, from disk (site/index.html under file://), and
from a web server, in a real headless Chromium (the system's, driven by Playwright): every
navigation link opens its page, not a directory listing; every link, image, script and stylesheet
of every page names a file that exists; nothing is loaded from anywhere else; search finds pages,
with a server and without one.

The site is the one `make docs` built into site/ (CI runs `make docs` before `make test-slow`);
when site/ is missing or older than its sources, the test builds its own copy."""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
SITE_NAME = "minigpt"
pytestmark = pytest.mark.slow
SOURCES = ("mkdocs.yml", "docs", "notebooks", "minigpt", "conf", "CONTRIBUTING.md")


def newest_source() -> float:
    """The last modification time among the files the site is built from."""
    times = []
    for name in SOURCES:
        path = ROOT / name
        files = (
            [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        )
        times += [p.stat().st_mtime for p in files]
    return max(times)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """site/ when `make docs` built it after the last change to its sources, else a fresh build."""
    index = ROOT / "site" / "index.html"
    if index.is_file() and index.stat().st_mtime >= newest_source():
        return index.parent
    out = tmp_path_factory.mktemp("site")
    mkdocs = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)]
    subprocess.run(mkdocs, cwd=ROOT, check=True, timeout=900)
    return out


class Links(HTMLParser):
    """The URLs a page points to: its links, images, scripts and stylesheets."""

    ATTRIBUTES = {"a": "href", "link": "href", "img": "src", "script": "src", "iframe": "src"}

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = self.ATTRIBUTES.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def broken_links(site: Path) -> list[str]:
    """Every relative URL of every page of `site` that names no file ('page: url'); a URL that
    names a folder is broken too, since a browser shows a folder from disk as a listing. 404.html is
    left out: a server shows it in place of any missing page, so its URLs start at the site's root."""
    broken = []
    for page in sorted(set(site.rglob("*.html")) - {site / "404.html"}):
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for url in parser.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc or not parts.path:  # external, or an anchor on this page
                continue
            if not (page.parent / unquote(parts.path)).is_file():
                broken.append(f"{page.relative_to(site)}: {url}")
    return broken


def test_every_link_of_every_page_names_a_file(site):
    assert broken_links(site) == []


def test_a_link_to_a_folder_is_reported(tmp_path):
    (tmp_path / "page").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="page/">a page</a> <a href="#top">top</a> <a href="https://x.y/">x</a>'
    )
    assert broken_links(tmp_path) == ["index.html: page/"]


@pytest.fixture(scope="module")
def server(site):
    """The site served over HTTP on a free local port, as a web server would: its root URL."""
    handler = functools.partial(Quiet, directory=str(site))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
        httpd.shutdown()


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request in the test output
        pass


@pytest.fixture(scope="module", params=["disk", "server"])
def root(request, site) -> str:
    """The URL of the site's folder: file:// (site/index.html opened from disk) or http://."""
    return site.as_uri() + "/" if request.param == "disk" else request.getfixturevalue("server")


@pytest.fixture(scope="module")
def browser(site):
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install the chromium package")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page, wide enough for the navigation sidebar, recording every request and every one
    that failed: not found on disk, or an HTTP error. A request the next navigation cancels
    (ERR_ABORTED) is no broken link."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.requests, page.failed = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on(
        "requestfailed", lambda r: "ERR_ABORTED" in (r.failure or "") or page.failed.append(f"{r.url}: {r.failure}")
    )
    page.on("response", lambda r: r.status < 400 or page.failed.append(f"{r.url}: HTTP {r.status}"))
    yield page
    page.close()


def nav_links(page) -> list[tuple[str, str]]:
    """The (text, href) of every page link in the site's navigation (anchors within a page left out)."""
    links = page.eval_on_selector_all(
        ".md-nav--primary a.md-nav__link[href]", "els => els.map(e => [e.textContent.trim(), e.getAttribute('href')])"
    )
    return [(text, href) for text, href in links if not href.startswith("#")]


def test_every_navigation_link_opens_its_page(root, page):
    index = root + "index.html"
    page.goto(index)
    links = nav_links(page)
    assert len(links) >= 20, links
    for text, href in links:
        page.goto(index)
        page.click(f".md-nav--primary a.md-nav__link[href='{href}']")
        page.wait_for_load_state()
        assert page.url.startswith(root) and page.url.endswith(".html"), (text, page.url)
        body = page.inner_text("body")
        assert "Index of" not in body and "Directory listing" not in body, (text, page.url)
        assert page.locator("article h1").count() >= 1, (text, page.url)
        assert page.title() in (f"{text} - {SITE_NAME}", SITE_NAME), (text, page.title())
    assert page.failed == []
    assert [url for url in page.requests if not url.startswith(root)] == []  # nothing from anywhere else


def test_search_finds_pages(root, page):
    page.goto(root + "index.html")
    page.fill("input.md-search__input", "attention")
    page.wait_for_selector(".md-search-result__item", timeout=10_000)
    first = page.get_attribute(".md-search-result__item a", "href")
    assert first and first.startswith(root) and ".html" in first, first
    assert page.failed == []
