"""Screenshots for the documentation site, taken in headless Chromium with Playwright.

    python scripts/screenshots.py                    # the site's pages and TensorBoard's
    python scripts/screenshots.py --only site        # build the site, shoot two of its pages
    python scripts/screenshots.py --only tensorboard # train (if needed), start TensorBoard, shoot it
    python scripts/screenshots.py --only debugging   # each failing gallery run beside its fix

site: builds the site (mkdocs build --strict) into site/, serves it on a free local port and saves
the home page and "Reading the model" as docs/images/site_home.png and site_reading_the_model.png.

tensorboard: trains a two-job sweep of the tiny model under outputs/docs_tb/ (skipped when its
summary.json files exist; --retrain starts over), starts TensorBoard on a free port, opens each
dashboard as TensorBoard first shows it, waits for its charts and saves
docs/images/tensorboard_<dashboard>.png.

debugging: trains each failure of the gallery (`experiment=debug/<failure>`), the run after its
fix and a normal run under outputs/docs_debug/ (skipped when their summary.json files exist;
about 15 minutes on 2 cores), and saves, for each failure, TensorBoard's time series of the
signal its symptom is named by, the failing run beside its fix, as docs/images/debugging_<view>.png
(the loss spike's as debugging_health.png), and the runs' diagnoses (the TEXT tab's
`view/health/diagnosis`) as docs/images/debugging_diagnosis.png.

Needs the system Chromium (`chromium` on PATH); Playwright's own browser download is not used.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
RUNS = ROOT / "outputs" / "docs_tb"
SWEEP = [sys.executable, "train.py", "-m", "model=tiny", "trainer.max_steps=500", "optim.lr=1e-3,3e-3"]
SWEEP += ["hydra.sweep.dir=outputs/docs_tb/sweep"]
# (file name, the part of TensorBoard's URL after '#', a text to click and scroll to or None, a text
# whose visibility means the click is not needed or None): each page as TensorBoard opens it,
# and the CUSTOM SCALARS page with its first section opened
DASHBOARDS = [
    ("timeseries", "timeseries", None, None),
    ("scalars", "scalars", None, None),
    ("custom_scalars", "custom_scalars", "induction", "1. previous-token score per head"),
    ("images", "images", None, None),
    ("text", "text", None, None),
    ("hparams", "hparams", None, None),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 90.0) -> None:
    """Poll `url` until it answers 200, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"error: {url} did not answer within {timeout:.0f} s")


def browser_page(playwright, width: int, height: int):
    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("error: no `chromium` on PATH; install it (e.g. apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    return browser, browser.new_page(viewport={"width": width, "height": height})


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on a free local port for as long as the block runs."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        pass


def shoot_site(playwright) -> None:
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet"], cwd=ROOT, check=True)
    browser, page = browser_page(playwright, 1280, 800)
    with serve(ROOT / "site") as url:
        for path, name in (("", "site_home"), ("reading-the-model.html", "site_reading_the_model")):
            page.goto(f"{url}/{path}", wait_until="networkidle")
            page.wait_for_timeout(500)
            page.screenshot(path=str(IMAGES / f"{name}.png"))
            print(f"saved docs/images/{name}.png")
    browser.close()


def train_runs(retrain: bool, overrides: list[str]) -> None:
    """The two-run sweep the TensorBoard screenshots show (about a minute on 2 idle cores)."""
    if retrain and RUNS.exists():
        shutil.rmtree(RUNS)
    if not all((RUNS / "sweep" / job / "summary.json").exists() for job in ("0", "1")):
        subprocess.run([*SWEEP, *overrides], cwd=ROOT, check=True)


@contextlib.contextmanager
def tensorboard(logdir: Path) -> Iterator[str]:
    """A TensorBoard on a free local port, stopped when the block ends."""
    port = free_port()
    # from the project's folder with a relative --logdir, as a user runs it (TensorBoard shows the logdir)
    logdir = logdir.relative_to(ROOT) if logdir.is_relative_to(ROOT) else logdir
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    process = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/data/logdir")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def shoot_tensorboard(playwright, retrain: bool, overrides: list[str]) -> None:
    train_runs(retrain, overrides)
    browser, page = browser_page(playwright, 1440, 900)
    with tensorboard(RUNS / "sweep") as url:  # run names start with the job: 0/tensorboard/optim.lr=0.001
        for name, fragment, click, opened_when in DASHBOARDS:
            page.goto(f"{url}/#{fragment}", wait_until="networkidle")
            page.wait_for_timeout(5000)  # charts draw after their data arrives
            if click is not None:
                target = page.get_by_text(click, exact=True).first
                if opened_when is None or not page.get_by_text(opened_when, exact=True).first.is_visible():
                    target.click()
                target.evaluate("element => element.scrollIntoView({block: 'start'})")
                page.wait_for_timeout(4000)
            page.screenshot(path=str(IMAGES / f"tensorboard_{name}.png"))
            print(f"saved docs/images/tensorboard_{name}.png")
    browser.close()


DEBUG_RUNS = ROOT / "outputs" / "docs_debug"
# run name -> its overrides: each failure of the gallery (docs/debugging.md) and the run after its
# fix; the fixes of lr_low, init_large and greedy give the normal run
DEBUG_RUN_OVERRIDES = {
    "normal": ["trainer.max_steps=300", "trainer.val_check_interval=100"],
    "loss_spike": ["experiment=debug/loss_spike"],
    "loss_spike_clipped": ["experiment=debug/loss_spike", "trainer.gradient_clip_val=1.0"],
    "lr_high": ["experiment=debug/lr_high"],
    "lr_high_fixed": ["experiment=debug/lr_high", "optim.lr=1e-3"],
    "lr_low": ["experiment=debug/lr_low"],
    "no_residual": ["experiment=debug/no_residual"],
    "no_residual_fixed": ["experiment=debug/no_residual", "model.residual=true"],
    "init_large": ["experiment=debug/init_large"],
    "no_warmup": ["experiment=debug/no_warmup"],
    "no_warmup_fixed": ["experiment=debug/no_warmup", "scheduler.warmup_steps=100"],
    "no_scale": ["experiment=debug/no_scale"],
    "no_scale_fixed": ["experiment=debug/no_scale", "model.scale_attn=true"],
    "greedy": ["experiment=debug/greedy"],
}
# (file name, the runs shown and the tags shown, as the regular expressions typed into TensorBoard's
# run and tag filters); TIME SERIES unsmoothed, every point in the charts' range
DEBUG_VIEWS = [
    ("debugging_health", "^loss_spike", "train/loss$|view/health/dead_units"),
    ("debugging_lr_high", "^lr_high", "eval/loss$|view/health/attention_saturation"),
    ("debugging_lr_low", "^(lr_low|normal)/", "train/loss$|eval/loss$"),
    ("debugging_no_residual", "^no_residual", "view/health/grad_ratio|grad_norm/layer(0|11)$"),
    ("debugging_init_large", "^(init_large|normal)/", "grad_norm/total|saturation/L0"),
    ("debugging_no_warmup", "^no_warmup", "eval/loss$|view/health/dead_units"),
    ("debugging_no_scale", "^no_scale", "eval/loss$|view/health/attention_saturation"),
]
CARDS_BOTTOM = "Math.max(...[...document.querySelectorAll('card-view')].map(e => e.getBoundingClientRect().bottom))"
# the TEXT tab: what the runs said (view/health/diagnosis), for three of them
DEBUG_DIAGNOSIS = ("debugging_diagnosis", "^(greedy|lr_low|init_large)/", "view/health/diagnosis")


def shoot_debugging(playwright, retrain: bool, overrides: list[str]) -> None:
    for name, run in DEBUG_RUN_OVERRIDES.items():
        run_dir = DEBUG_RUNS / name
        if retrain or not (run_dir / "summary.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            command = [sys.executable, "train.py", *run, "trainer.log_every_n_steps=1", f"run_dir={run_dir}"]
            subprocess.run([*command, *overrides], cwd=ROOT, check=True)
    browser, page = browser_page(playwright, 1440, 1000)
    with tensorboard(DEBUG_RUNS) as url:
        for index, (name, runs, tags) in enumerate(DEBUG_VIEWS):
            query = urllib.parse.urlencode({"runFilter": runs, "tagFilter": tags, "smoothing": 0})
            page.goto(f"{url}/?{query}#timeseries", wait_until="networkidle")
            page.wait_for_timeout(4000)
            if index == 0:  # the settings pane: show spikes (no outlier clipping), then close it
                page.get_by_text("Ignore outliers in chart scaling").click()
                page.get_by_role("button", name="Settings").first.click()
            page.wait_for_timeout(4000)  # charts draw after their data arrives
            bottom = page.evaluate(CARDS_BOTTOM)  # the picture ends below the last chart
            page.screenshot(
                path=str(IMAGES / f"{name}.png"), clip={"x": 0, "y": 0, "width": 1440, "height": bottom + 16}
            )
            print(f"saved docs/images/{name}.png")
        name, runs, tags = DEBUG_DIAGNOSIS
        page.set_viewport_size({"width": 1440, "height": 1100})  # the three runs' diagnoses
        fragment = urllib.parse.urlencode({"tagFilter": tags, "regexInput": runs})  # the TEXT tab reads the hash
        page.goto(f"{url}/#text&{fragment}", wait_until="networkidle")
        page.wait_for_timeout(6000)
        page.screenshot(path=str(IMAGES / f"{name}.png"))
        print(f"saved docs/images/{name}.png")
    browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["site", "tensorboard", "debugging"], help="one set (default: all)")
    parser.add_argument("--retrain", action="store_true", help="train the runs shown again")
    parser.add_argument("overrides", nargs="*", help="for the sweep, e.g. data.path=/path/to/input.txt offline")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        if args.only in (None, "site"):
            shoot_site(playwright)
        if args.only in (None, "tensorboard"):
            shoot_tensorboard(playwright, args.retrain, args.overrides)
        if args.only in (None, "debugging"):
            shoot_debugging(playwright, args.retrain, args.overrides)


if __name__ == "__main__":
    main()
