r"""Takes a screenshot of TensorBoard's Scalars dashboard for runs under a folder (the README's picture).

    python tools/screenshot_tensorboard.py --logdir=/tmp/tb --output=docs/tensorboard_cifar10.png \
        --tags='^(loss|eval/knn_top1|probe_accuracy)$'

Starts `tensorboard --logdir=LOGDIR` on a free local port, opens the Scalars
dashboard in headless Chromium through Playwright (tags filtered by the
`--tags` regex, no smoothing, outliers not ignored), saves a PNG and stops
TensorBoard. Needs Playwright and a Chromium it can launch, neither of which
byol_tf depends on: `pip install playwright`, and `playwright install
chromium` or a system Chromium (`--chromium=/usr/bin/chromium`, e.g. Debian's
`apt-get install chromium`).
"""

import argparse
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

# Chromium without the background connections a closed network refuses.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run")


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_until_up(url, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"error: tensorboard exited with code {process.returncode} before serving {url}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    sys.exit(f"error: tensorboard did not answer at {url} within {timeout} s")


def screenshot(logdir, output, tags, chromium=None, width=1400, height=770):
    """Serves `logdir` with TensorBoard and saves its Scalars dashboard (tags matching `tags`) to `output`."""
    try:
        from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.exit("error: this tool needs Playwright: pip install playwright (and a Chromium, see --help)")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", f"--logdir={logdir}", f"--port={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        root = f"http://localhost:{port}/"
        _wait_until_up(root, server)
        fragment = f"scalars&tagFilter={urllib.parse.quote(tags, safe='')}&_smoothingWeight=0"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=list(CHROMIUM_ARGS))
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(f"{root}?darkMode=false#{fragment}")
            page.wait_for_timeout(8000)  # the dashboard loads its runs and tags
            page.get_by_text("Ignore outliers in chart scaling").click()  # on by default: now off
            page.wait_for_timeout(3000)
            page.screenshot(path=output)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"Wrote {output}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logdir", required=True, help="Folder holding the runs (as for tensorboard --logdir).")
    parser.add_argument("--output", required=True, help="PNG path.")
    parser.add_argument("--tags", default="^(loss|eval/knn_top1|probe_accuracy)$", help="Regex of the tags shown.")
    parser.add_argument("--chromium", default=None, help="Chromium executable (default: Playwright's own).")
    args = parser.parse_args()
    screenshot(args.logdir, args.output, args.tags, args.chromium)


if __name__ == "__main__":
    main()
