"""The demo app (`demo/app.py`) in a real headless Chromium: start it on a loopback port, pick an example, move the
budget, and check that the input picture shows, and that the overlay, the reported depth and the GFLOPs change as the
model says they should; bad uploads get a message in the page. ECOM2F_DEMO_SCREENSHOT=docs/demo_screenshot.jpg
keeps the screenshot (the README's)."""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.demo import DEMO, demo_engine

pytestmark = pytest.mark.slow

REPO_ROOT = DEMO.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run installs "
                "them)", allow_module_level=True)
pytest.importorskip("gradio", reason="gradio is not installed (pip install -e '.[demo]')")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# Offline Chromium: no sandbox (root in CI), no GPU, no background traffic, a fresh profile per run.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1500")
HARD_EXAMPLE = "rooms 4"  # the four-room maze: the gate sends it deep at beta 0
STATS = re.compile(r"Depth: (\d+) of (\d+) encoder layers.*?encoder GFLOPs ([\d.]+) ([\d.]+) (\d+)%"
                   r".*?total GFLOPs ([\d.]+) ([\d.]+) (\d+)%", re.S)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("demo_app") / "app.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(DEMO / "app.py"), "--port", str(port), "--threads", "1"],
                                   cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(f"demo/app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"demo/app.py did not answer on {url} within 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium_profile')}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def expected():
    """What the model itself reports for the hard example, per budget (the page must show the same)."""
    engine = demo_engine()
    Budget, DemoSegmenter, example_images, load_image = (engine.Budget, engine.DemoSegmenter, engine.example_images,
                                                         engine.load_image)
    examples = example_images(DEMO / "examples")
    images = [load_image(p, max_side=1024)[0] for p in examples]
    segmenter = DemoSegmenter.from_pretrained(str(DEMO / "model"), calibration_images=images)
    hard = images[[i for i, p in enumerate(examples) if p.stem.replace("_", " ").startswith(HARD_EXAMPLE)][0]]

    def run(budget):
        r = segmenter.segment(hard, budget=budget)
        return r.depth, round(r.encoder_gflops, 4), round(r.total_gflops, 4)

    low, high, step = engine.BETA_SLIDER
    at_zero = run(Budget("gate", beta=low))
    positions = range(1, round((high - low) / step) + 1)  # slider steps to the right
    moved = next(n for n in positions if run(Budget("gate", beta=round(low + n * step, 6)))[0] != at_zero[0])
    beta = round(low + moved * step, 6)
    return {"beta 0": at_zero, "moved": (moved, beta, run(Budget("gate", beta=beta))),
            "share min": run(Budget("budget", share=math.ceil(100 * segmenter.shallowest_share) / 100)),
            "share 1": run(Budget("budget", share=1.0)), "fixed 5": run(Budget("fixed", depth=5)),
            "full": (segmenter.max_depth, round(segmenter.segment(hard, budget=Budget("fixed")).encoder_gflops, 4))}


def _wait(driver, condition, what: str, timeout: float = 120):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda _: condition())
    except Exception:
        page = driver.find_element(By.TAG_NAME, "body").text[-2000:]
        raise AssertionError(f"timed out waiting for {what}; the page says:\n{page}") from None


def _stats(driver) -> tuple | None:
    """(depth, max depth, encoder used, encoder full, encoder %, total used, total full, total %) or None while busy."""
    text = driver.find_element(By.ID, "stats").text
    match = None if "processing" in text else STATS.search(text)
    return None if match is None else tuple(float(v) if "." in v else int(v) for v in match.groups())


def _overlay_src(driver) -> str | None:
    images = driver.find_elements(By.CSS_SELECTOR, "#overlay img")
    return images[0].get_attribute("src") if images else None


def _settle(driver, previous_src: str | None, what: str) -> tuple:
    """Wait for a new overlay and its numbers; returns the parsed numbers."""
    _wait(driver, lambda: _overlay_src(driver) not in (None, previous_src) and _stats(driver), what)
    return _stats(driver)


def _input_picture(driver) -> tuple[str | None, int]:
    """The input area's picture: its `src` and natural width (0 until it has loaded)."""
    return tuple(driver.execute_script(
        "const i = document.querySelector('#upload img');"
        "return i ? [i.getAttribute('src'), i.complete ? i.naturalWidth : 0] : [null, 0];"))


def _shows_picture(driver, previous_src: str | None = None) -> bool:
    src, width = _input_picture(driver)
    return bool(src) and src != previous_src and width > 0


def _message(driver) -> str:
    return driver.find_element(By.ID, "message").text


def test_moving_the_budget_changes_depth_gflops_and_overlay(app_url, browser, expected, tmp_path):
    browser.get(app_url)
    _wait(browser, lambda: _stats(browser), "the first result (the default example)")
    first = _overlay_src(browser)
    # The input area shows the picture itself (not a file name): the default example, at its own size.
    examples = sorted((DEMO / "examples").glob("*.png"))
    _wait(browser, lambda: _shows_picture(browser), "the input picture")
    first_input, width = _input_picture(browser)
    assert width == Image.open(examples[0]).size[0]
    assert first_input.startswith(app_url) and examples[0].stem not in browser.find_element(By.ID, "upload").text

    browser.find_element(By.XPATH, f"//button[contains(., '{HARD_EXAMPLE}')]").click()  # a bundled example
    stats = _settle(browser, first, "the hard example's result")
    _wait(browser, lambda: _shows_picture(browser, first_input), "the hard example's picture in the input")
    depth, max_depth, enc, enc_full, enc_share, total, total_full, _ = stats
    assert (depth, enc, total) == expected["beta 0"]
    assert (max_depth, enc_full) == expected["full"] and enc_share == round(100 * enc / enc_full)
    before = _overlay_src(browser)

    steps, beta, at_beta = expected["moved"]  # the first slider position where the gate picks another depth
    slider = browser.find_element(By.CSS_SELECTOR, "#beta input[type=range]")
    for _ in range(steps):
        slider.send_keys(Keys.ARROW_RIGHT)
    _wait(browser, lambda: f"beta {beta:g}" in browser.find_element(By.ID, "stats").text
          and (_stats(browser) or (0,))[0] == at_beta[0], f"the depth at beta {beta:g}")
    stats = _stats(browser)
    assert (stats[0], stats[2], stats[5]) == at_beta
    assert stats[2] < enc and stats[5] < total  # shallower: cheaper encoder and total
    assert _overlay_src(browser) != before

    budget = browser.find_element(By.CSS_SELECTOR, "#share input[type=range]")
    budget.send_keys(Keys.HOME)  # the smallest encoder budget: selects the budget mode, calibrates beta
    _wait(browser, lambda: "calibrated" in browser.find_element(By.ID, "stats").text and _stats(browser),
          "the calibrated budget")
    assert (_stats(browser)[0], _stats(browser)[2], _stats(browser)[5]) == expected["share min"]
    assert "calibration images" in _message(browser)
    budget.send_keys(Keys.END)  # the whole budget
    _wait(browser, lambda: (_stats(browser) or (0,))[0] == expected["share 1"][0], "the full budget")
    assert (_stats(browser)[0], _stats(browser)[2], _stats(browser)[5]) == expected["share 1"]

    src = _overlay_src(browser)
    browser.find_element(By.XPATH, "//*[@id='depth']//label[normalize-space(.)='5']").click()  # a fixed depth
    stats = _settle(browser, src, "fixed depth 5")
    assert (stats[0], stats[2], stats[5]) == expected["fixed 5"]
    assert browser.find_element(By.CSS_SELECTOR, "#mode input[aria-checked=true]").get_attribute("value") == "fixed"

    browser.find_element(By.XPATH, "//*[@id='all_exits']//input").click()
    _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#exits img"), "every exit side by side")
    loaded = "const i = document.querySelector(arguments[0]); return i && i.complete ? i.naturalWidth : 0;"
    _wait(browser, lambda: browser.execute_script(loaded, "#overlay img") > 0, "the overlay picture")
    _wait(browser, lambda: browser.execute_script(loaded, "#exits img") > 0, "the exits picture")
    wide = browser.execute_script(loaded, "#exits img")
    assert wide > 3 * browser.execute_script(loaded, "#overlay img")  # one panel per exit

    shot = tmp_path / "demo.png"
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] > 0
    if os.environ.get("ECOM2F_DEMO_SCREENSHOT"):  # the format follows the name (the README's is a JPEG)
        Image.open(shot).convert("RGB").save(os.environ["ECOM2F_DEMO_SCREENSHOT"], quality=85)


def _upload(browser, path: Path) -> None:
    clear = browser.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Remove Image']")
    if clear:
        clear[0].click()
        _wait(browser, lambda: browser.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), "the upload box")
    browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(str(path))


def test_bad_uploads_get_a_message_and_good_ones_a_result(app_url, browser, tmp_path):
    browser.get(app_url)
    _wait(browser, lambda: _stats(browser), "the first result")

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is text, not a picture")
    _upload(browser, not_an_image)
    _wait(browser, lambda: "not an image" in _message(browser), "the message for a non-image")
    assert "notes.png" in _message(browser) and not _stats(browser)
    assert "Traceback" not in browser.page_source

    huge = tmp_path / "huge.png"  # 3000x2000: resized to the demo's 1024-pixel limit
    Image.fromarray(np.broadcast_to(np.linspace(0, 255, 3000, dtype=np.uint8)[None, :, None], (2000, 3000, 3)).copy()
                    ).save(huge)
    _upload(browser, huge)
    _wait(browser, lambda: "resized" in _message(browser) and _stats(browser), "the resized image's result")
    assert "3000x2000" in _message(browser) and "1024x683" in _message(browser)

    _upload(browser, sorted((DEMO / "examples").glob("*.png"))[0])  # a good upload clears the message
    _wait(browser, lambda: not _message(browser).strip() and _stats(browser), "a clean result")
    stats, src = _stats(browser), _overlay_src(browser)
    browser.find_element(By.XPATH, "//*[@id='task']//label[normalize-space(.)='instance']").click()
    assert _settle(browser, src, "the instance overlay")[:3] == stats[:3]  # another drawing, the same depth and cost
