"""Make docs/img/tensorboard.png: a small sweep of the quick-start spiral in TensorBoard's HParams tab, best first.

    python docs/tensorboard_screenshot.py                  # about a minute on 2 cores
    python docs/tensorboard_screenshot.py --out /tmp/x.png

Runs ``nnctl sweep configs/spiral.yaml -p model.layers.0.activation=... -p optimizer.lr=... --seeds 0,1 --set
training.loggers=[tensorboard]`` into a temporary folder, starts ``tensorboard --logdir SWEEP`` on a free
loopback port, and takes the screenshot with Debian's headless Chromium through its chromedriver (explicit
paths: nothing is downloaded).  Needs ``pip install -e ".[test]"`` (tensorboard, tensorboardX, Selenium) and
``apt-get install chromium chromium-driver``.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
SWEEP = [
    "-p", "model.layers.0.activation=tanh,relu,sigmoid", "-p", "optimizer.lr=0.1,0.03", "--seeds", "0,1",
    "--set", "training.loggers=[tensorboard]",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


#: the HParams dashboard's query pane, inside its shadow roots; its sort column (hparams first, then metrics)
QUERY_PANE = """
const main = document.querySelector('tf-hparams-dashboard').shadowRoot.querySelector('tf-hparams-main');
return main.shadowRoot.querySelector('tf-hparams-query-pane');
"""


def screenshot(url: str, out: Path, sort_column: int) -> None:
    """The HParams table, sorted by column ``sort_column``, largest first."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, "--window-size=1400,900"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.get(url)
        pane = WebDriverWait(driver, 60).until(lambda driver: driver.execute_script(f"try {{ {QUERY_PANE} }} catch (e) {{ return null; }}"))
        WebDriverWait(driver, 60).until(lambda driver: driver.execute_script("return arguments[0].sessionGroups.length", pane))
        driver.execute_script("arguments[0]._sortByIndex = arguments[1]; arguments[0]._sortDirection = 1;", pane, sort_column)
        time.sleep(3)  # the sorted table is fetched from the server and drawn
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "tensorboard.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nnctl-tensorboard-") as scratch:
        sweep = [sys.executable, "-m", "nnctl", "sweep", str(REPO / "configs" / "spiral.yaml"), *SWEEP, "--out", scratch, "--workers", "2"]
        subprocess.run(sweep, check=True, stdout=subprocess.DEVNULL)
        (folder,) = (Path(scratch) / "sweeps").iterdir()
        port = free_port()
        tensorboard = [sys.executable, "-m", "tensorboard.main", "--logdir", str(folder), "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(tensorboard, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(f"http://127.0.0.1:{port}/data/logdir")
            screenshot(f"http://127.0.0.1:{port}/#hparams", args.out, sort_column=3)  # 3 hparams, then test_accuracy
        finally:
            server.terminate()
            server.wait()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
