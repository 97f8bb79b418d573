"""The web playground in a real browser: headless Chromium driven by Selenium against a real ``nnctl playground
--web`` server (one of each for the module).  A TensorFlow Playground link trains live and paints the heatmap,
layers come and go, the exported YAML retraces the session with ``nnctl train``, CSV uploads good and bad, and the
README's screenshot (docs/img/playground.png, written with ``NNCTL_SCREENSHOTS=docs``).  The protocol itself is tested in test_playground_web.py."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from conftest import REPO, nnctl_in_process

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError as exc:  # reported by the `chromium` fixture, as a missing browser is
    SELENIUM_MISSING: str | None = f"selenium cannot be imported ({exc}): pip install selenium"
else:
    SELENIUM_MISSING = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--no-first-run", "--window-size=1400,1000",
]  # fmt: skip
#: a link copied from playground.tensorflow.org (its every key): circle, no noise, a 4-2 tanh network
TF_LINK = (
    "activation=tanh&batchSize=10&dataset=circle&regDataset=reg-plane&learningRate=0.03&regularizationRate=0"
    "&noise=0&networkShape=4,2&seed=0.80593&showTestData=false&discretize=false&percTrainData=50&x=true&y=true"
    "&xTimesY=false&xSquared=false&ySquared=false&cosX=false&sinX=false&cosY=false&sinY=false&collectStats=false"
    "&problem=classification&initZero=false&hideText=false"
)
#: the link's keys nnctl does not have (said in a note when true; left out of the page's hash)
NOT_KEPT = {"cosX", "cosY", "collectStats", "initZero", "hideText"}
#: the README's picture: the spiral, learned from x1, x2, sin x1, sin x2 by an 8-8-4 tanh network
SPIRAL = (
    "dataset=spiral&activation=tanh&learningRate=0.03&batchSize=10&noise=0&seed=0.80593&networkShape=8,8,4"
    "&x=true&y=true&sinX=true&sinY=true&xSquared=false&ySquared=false&xTimesY=false&showTestData=true"
    "&problem=classification"
)
WAIT = 30  # seconds; the conditions below hold in well under a second on an idle machine


def hash_pairs(text: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in unquote(text.lstrip("#")).split("&") if part)


# ------------------------------------------------------------------------------------ browser, server, page


@pytest.fixture(scope="module")
def chromium():
    """The browser and its driver, or a skip that says how to install them (a failure under CI)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    reason = None
    if missing:
        reason = f"{' and '.join(missing)} not found: apt-get install chromium chromium-driver"
    elif SELENIUM_MISSING:
        reason = SELENIUM_MISSING
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser tests must run: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory):
    """``nnctl playground --web`` in a temporary folder (Save run writes ./runs there); yields its URL.
    Stopped with Ctrl-C (SIGINT) at the end, which must end it cleanly."""
    cwd = tmp_path_factory.mktemp("playground-server")
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "nnctl", "playground", "--web", "--no-browser", "--port", "0"],
            stdout=stdout, stderr=stderr, text=True, cwd=cwd,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT
        while "\n" not in out.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the server's first line
        url = out.read_text().split("\n")[0].strip()
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url, f"no URL from the server: {url!r}\n{err.read_text()}"
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(f"the server did not stop on Ctrl-C:\n{err.read_text()}")
    stderr_text = err.read_text()
    assert process.returncode == 0, stderr_text
    assert "Traceback" not in stderr_text, stderr_text


@pytest.fixture(scope="module")
def browser(chromium, server):
    """One headless Chromium for the module (after the server, so it is quit before the server stops).
    An explicit driver path: Selenium Manager never looks for (or downloads) a driver."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


class Page:
    """The playground page in the module's browser, by its data-testid names."""

    def __init__(self, driver, url: str):
        self.driver, self.url = driver, url

    def open(self, link_hash: str) -> None:
        """A fresh page (a new WebSocket, so a new session) for ``link_hash``; returns once it shows epoch 0."""
        self.driver.get("about:blank")  # same URL with another hash would only be a hash change
        self.driver.get(f"{self.url}#{link_hash}")
        self.wait(lambda _: self.text("test-loss") != "" and self.text("epoch") == "0" and self.find_all("#network .layer"))

    def find(self, testid: str):
        return self.driver.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]")

    def find_all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, testid: str) -> str:
        return self.find(testid).text.strip()

    def playing(self) -> bool:
        """What the play button says (its word is hidden behind an icon, so read as textContent)."""
        return self.find("play").get_attribute("textContent") == "Pause"

    def click(self, testid: str) -> None:
        self.find(testid).click()

    def epoch(self) -> int:
        return int(self.text("epoch"))

    def hash(self) -> dict[str, str]:
        return hash_pairs(self.driver.execute_script("return location.hash"))

    def wait(self, condition, timeout: float = WAIT, describe=None, poll: float = 0.05):
        """WebDriverWait on ``condition(driver)``; an element replaced by a redraw is read again.  On a timeout,
        ``describe()`` says what the page shows then."""
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=poll, ignored_exceptions=[StaleElementReferenceException]).until(
                condition
            )
        except TimeoutException:
            shown = describe() if describe else ""
            raise AssertionError(f"waited {timeout} s in vain: {shown} (error box: {self.text('error')!r})") from None

    def wait_epoch(self, epoch: int) -> None:
        self.wait(lambda _: self.text("epoch") == str(epoch), describe=lambda: f"epoch {epoch} expected, the page shows {self.text('epoch')}")

    def step(self, times: int) -> None:
        for _ in range(times):
            expected = self.epoch() + 1
            self.click("step")
            self.wait_epoch(expected)

    def play_until(self, condition, timeout: float = WAIT) -> None:
        self.click("play")
        self.wait(lambda _: self.playing())
        self.wait(condition, timeout, describe=lambda: f"epoch {self.text('epoch')}, test loss {self.text('test-loss')}, {self.text('test-score')}")
        self.pause()

    def pause(self) -> None:
        """Pause, and wait until the server has: the button says Play and the epoch stays put (a playing page
        gets at least 10 frames a second)."""
        self.click("play")
        seen: list[str] = []

        def stopped(_) -> bool:
            seen.append("running" if self.playing() else self.text("epoch"))
            return len(seen) >= 4 and len(set(seen[-4:])) == 1 and seen[-1] != "running"

        self.wait(stopped, poll=0.2, describe=lambda: f"still playing: {seen[-8:]}")

    def heatmap_colours(self) -> dict[str, float]:
        """The share of orange-ish and blue-ish pixels of the big heatmap in its corners (|x|, |y| > 5: no
        circle points there) and its centre (|x|, |y| < 1.5).  A blank heatmap (white under the points) has
        no orange in the corners and leaves most of the centre white."""
        return self.driver.execute_script(
            """
            const canvas = document.querySelector('[data-testid=heatmap]');
            const size = canvas.width, pixels = canvas.getContext('2d').getImageData(0, 0, size, size).data;
            const counts = {corner: [0, 0, 0], centre: [0, 0, 0]};  // orange, blue, all
            for (let row = 0; row < size; row++) {
              for (let col = 0; col < size; col++) {
                const x = -6 + 12 * (col + 0.5) / size, y = 6 - 12 * (row + 0.5) / size;
                const region = Math.abs(x) > 5 && Math.abs(y) > 5 ? 'corner'
                  : Math.abs(x) < 1.5 && Math.abs(y) < 1.5 ? 'centre' : null;
                if (!region) continue;
                const k = 4 * (row * size + col), r = pixels[k], b = pixels[k + 2];
                counts[region][0] += r - b > 40;
                counts[region][1] += b - r > 40;
                counts[region][2] += 1;
              }
            }
            const share = ([orange, blue, all]) => [orange / all, blue / all];
            const [cornerOrange, cornerBlue] = share(counts.corner), [centreOrange, centreBlue] = share(counts.centre);
            return {cornerOrange, cornerBlue, centreOrange, centreBlue};
            """
        )


@pytest.fixture
def page(browser, server):
    yield Page(browser, server)
    # the page logged no error in the browser's console (a failed request, a script error, ...)
    severe = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe


# ------------------------------------------------------------------------------------ the tests


def test_a_playground_link_trains_live_and_paints_the_heatmap(page):
    page.open(TF_LINK)
    link = hash_pairs(TF_LINK)
    shown = page.hash()
    assert shown["networkShape"] == "4,2" and shown["dataset"] == "circle"
    assert {k: v for k, v in link.items() if k not in NOT_KEPT} == {k: v for k, v in shown.items() if k in link}
    assert page.find("notes").get_attribute("hidden") is not None  # the extra keys are all false: nothing to say
    assert [e.get_attribute("data-testid") for e in page.find_all("#network .neuron")] == [
        "neuron-1-0", "neuron-1-1", "neuron-1-2", "neuron-1-3", "neuron-2-0", "neuron-2-1", "neuron-3-0",
    ]  # fmt: skip
    start = float(page.text("test-loss"))
    untrained = page.heatmap_colours()
    page.play_until(lambda _: page.epoch() > 100)
    assert page.epoch() > 100
    loss = float(page.text("test-loss"))
    assert loss < 0.5 * start, (start, loss)
    assert float(page.text("test-score").removeprefix("accuracy ").rstrip("%")) > 90
    colours = page.heatmap_colours()
    # the outside of the circle is orange, its inside blue: the heatmap is painted, not white under the points
    assert colours["cornerOrange"] > 0.9 and colours["centreBlue"] > 0.75, (untrained, colours)
    assert colours["cornerBlue"] == 0 and colours["centreOrange"] < 0.05, colours
    assert untrained["cornerOrange"] < 0.5 and untrained["centreBlue"] < 0.5, untrained  # ... which it was not before training
    # hovering a neuron (hidden or output) shows its output in the big heatmap; leaving it shows the network's again
    for neuron in ("neuron-1-2", "neuron-3-0"):
        ActionChains(page.driver).move_to_element(page.find(neuron)).perform()
        page.wait(lambda _, n=neuron: page.text("heatmap-caption") == f"showing neuron {n[7:].replace('-', ':')}")
        ActionChains(page.driver).move_to_element(page.find("epoch")).perform()
        page.wait(lambda _: page.text("heatmap-caption") == "")


def test_adding_and_removing_a_layer_changes_the_hash_and_the_diagram(page):
    page.open(TF_LINK.replace("xSquared=false&ySquared=false", "xSquared=true&ySquared=true").replace("xTimesY=false", "xTimesY=true")
              .replace("sinX=false", "sinX=true").replace("sinY=false", "sinY=true"))  # fmt: skip
    assert len(page.find_all("#network .feature.active")) == 7

    def diagram() -> tuple[str, list[str]]:
        """networkShape in the hash, and the titles of the diagram's hidden layers (read at once: the diagram is
        rebuilt by every state message)."""
        shape, titles = page.driver.execute_script(
            """
            return [new URLSearchParams(location.hash.slice(1)).get('networkShape'),
                    Array.from(document.querySelectorAll('#network .hidden-layer .layer-title'), (e) => e.textContent)];
            """
        )
        return shape, [title.upper() for title in titles]

    def fits(output: str) -> None:
        """No scrollbar under the diagram, and the output neuron inside it (not cut off on the right)."""
        sizes = page.driver.execute_script(
            """
            const host = document.getElementById('network'), box = host.getBoundingClientRect();
            const output = document.querySelector(`[data-testid=${arguments[0]}]`).getBoundingClientRect();
            return {scroll: host.scrollWidth, client: host.clientWidth, right: output.right, edge: box.right};
            """,
            output,
        )
        assert sizes["scroll"] <= sizes["client"] and sizes["right"] <= sizes["edge"], sizes

    page.click("add-layer")
    page.wait(lambda _: diagram() == ("4,2,2", ["4 NEURONS", "2 NEURONS", "2 NEURONS"]))
    assert page.find_all("#layer-count")[0].text.lower() == "3 hidden layers"
    assert page.find_all("[data-testid=neuron-3-1]") and page.find_all("[data-testid=neuron-4-0]")  # the new layer, the output
    assert len(page.find_all("#network path.link")) == 7 * 4 + 4 * 2 + 2 * 2 + 2 * 1
    fits("neuron-4-0")  # 7 features and 3 hidden layers fit a 1400 px window
    for shape in ("4,2,2,2", "4,2,2,2,2", "4,2,2,2,2,2"):
        page.click("add-layer")
        page.wait(lambda _, shape=shape: diagram()[0] == shape and len(diagram()[1]) == shape.count(",") + 1)
    fits("neuron-7-0")  # ... and so do 6 (the Playground's most), in narrower columns
    for shape in ("4,2,2,2,2", "4,2,2,2", "4,2,2", "4,2"):
        page.click("remove-layer")
        page.wait(lambda _, shape=shape: diagram()[0] == shape and len(diagram()[1]) == shape.count(",") + 1)
    assert diagram() == ("4,2", ["4 NEURONS", "2 NEURONS"])
    assert page.find_all("#layer-count")[0].text.lower() == "2 hidden layers"
    assert not page.find_all("[data-testid=neuron-4-0]") and len(page.find_all("#network path.link")) == 7 * 4 + 4 * 2 + 2 * 1
    fits("neuron-3-0")


def test_the_exported_yaml_retraces_the_session_with_nnctl_train(page, tmp_path):
    page.open(TF_LINK)
    page.step(3)
    page.click("reset")
    page.wait_epoch(0)
    page.step(7)
    page.click("export-yaml")
    page.wait(lambda _: page.find("yaml").is_displayed() and "epochs: 7" in page.find("yaml").get_attribute("textContent"))
    text = page.find("yaml").get_attribute("textContent")  # as it is, indentation included
    assert text.startswith("# exported from the nnctl playground after 7 epochs")
    config = tmp_path / "playground-circle.yaml"
    config.write_text(text)
    result = nnctl_in_process("train", config, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "out").iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == page.epoch() == 7
    assert f"{summary['test_loss']:.3f}" == page.text("test-loss")


def test_a_csv_upload_trains_and_a_bad_one_says_which_line(page, tmp_path):
    points = np.random.default_rng(0).uniform(-3, 3, (90, 2))
    good = tmp_path / "three.csv"
    good.write_text("a,b,label\n" + "".join(f"{x:.3f},{y:.3f},{'abc'[int((x + 3) // 2) % 3]}\n" for x, y in points))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,x\n3,oops,y\n4,5,x\n")
    page.open(TF_LINK)
    page.find("upload").send_keys(str(good))
    page.wait(lambda _: page.text("data-name") == "Data: three.csv" and len(page.find_all("[data-testid=confusion] tbody tr")) == 3)
    assert [e.text for e in page.find_all("[data-testid=legend] .swatch-item")] == ["a", "b", "c"]
    assert [e.text for e in page.find_all("#network .feature.static")] == ["a", "b"]
    assert len(page.find_all("#network .output-layer .neuron")) == 3
    page.step(1)
    page.find("upload").send_keys(str(bad))
    page.wait(lambda _: page.find("error").is_displayed())
    message = page.text("error")
    assert "bad.csv" in message and "line 3" in message, message
    assert page.text("data-name") == "Data: three.csv"  # the good upload is still the data
    page.step(1)
    assert page.epoch() == 2


def test_the_readme_screenshot_of_the_spiral(page, tmp_path):
    """The README's picture, taken from the real page.  The suite writes it into a temporary folder (running the
    tests changes no file of the repository); ``NNCTL_SCREENSHOTS=docs`` writes it to docs/img/playground.png."""
    page.open(SPIRAL)
    assert len(page.find_all("#network .feature.active")) == 4 and page.hash()["networkShape"] == "8,8,4"
    assert page.find("show-test-data").is_selected()

    def accuracy() -> float:
        text = page.text("test-score").removeprefix("accuracy ").rstrip("%")
        return float(text) if text else 0.0

    page.play_until(lambda _: accuracy() >= 97 or page.epoch() >= 600)
    picture = (REPO / "docs" / "img" if os.environ.get("NNCTL_SCREENSHOTS") == "docs" else tmp_path) / "playground.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    # the top of the page, without the window's scrollbar (the diagram re-fits to the wider page first)
    page.driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur(); document.documentElement.style.overflow = 'hidden';")
    page.driver.execute_async_script("const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
    try:
        assert page.driver.save_screenshot(str(picture))
    finally:
        page.driver.execute_script("document.documentElement.style.overflow = '';")
    data = picture.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 1200 and height >= 700, (width, height)
    assert 50_000 < len(data) < 5_000_000, len(data)
    assert accuracy() >= 90, page.text("test-score")
