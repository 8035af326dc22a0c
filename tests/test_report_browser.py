"""The report page in a real browser: headless Debian Chromium at 1280 and 800 px; nothing may overflow the window."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from allmlp.checkpoint import save_run
from allmlp.cli import main
from allmlp.configure import build_config
from allmlp.data.text import CharTokenizer
from allmlp.models import create_model
from test_report import fake_image_run

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WIDTHS = (1280, 800)

# Every element's right edge must stay inside the window, except inside a box that scrolls on its own.
OVERFLOW_JS = """
const width = window.innerWidth;
const scrolls = element => {
  for (let box = element.parentElement; box && box !== document.body; box = box.parentElement) {
    const overflow = getComputedStyle(box).overflowX;
    if (overflow === 'auto' || overflow === 'scroll') return true;
  }
  return false;
};
const overflowing = [];
for (const element of document.querySelectorAll('body *')) {
  const right = element.getBoundingClientRect().right;
  if (right > width + 0.5 && !scrolls(element))
    overflowing.push(`${element.tagName.toLowerCase()}.${element.className} right=${Math.round(right)}`);
}
const boxes = [...document.querySelectorAll('.scroll')].map(b => [b.scrollWidth, b.clientWidth]);
return {innerWidth: width, scrollWidth: document.documentElement.scrollWidth, overflowing: overflowing.slice(0, 10),
        scrollBoxes: boxes, height: document.documentElement.scrollHeight};
"""


def unavailable(reason: str):
    """Skip where a browser truly cannot be had; in CI (CI set) fail loudly instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser check: `make test` installs chromium as root)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium driven by Selenium through Debian's chromedriver."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[dev])")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).is_file():
            unavailable(f"{path} is missing (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--hide-scrollbars", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def set_inner_width(driver, width: int, height: int = 900) -> None:
    """Resize the window so that the page itself (window.innerWidth) is `width` px wide."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return window.innerWidth")
    if inner != width:
        driver.set_window_size(2 * width - inner, height)
    assert driver.execute_script("return window.innerWidth") == width


def measure_and_screenshot(driver, page: Path, width: int, screenshot: Path) -> dict:
    """Load `page` at `width` px, measure overflow in the page, save a full-height screenshot."""
    set_inner_width(driver, width)
    driver.get(page.as_uri())
    layout = driver.execute_script(OVERFLOW_JS)
    set_inner_width(driver, width, min(layout["height"] + 100, 6000))  # the whole page in one picture
    driver.save_screenshot(str(screenshot))
    return layout


def text_run(folder: Path) -> Path:
    """A text run whose samples are long lines without spaces (they must wrap), with a few logged metrics."""
    tokenizer = CharTokenizer("abcdefghijklmnopqrstuvwxyz")
    cfg = build_config({"model": {"name": "causal_mixer", "vocab_size": tokenizer.vocab_size, "context_length": 16,
                                  "embedding_dim": 16, "depth": 2, "channels_mlp_dim": 16, "num_heads": 2},
                        "data": {"name": "text", "path": "letters.txt"}})
    torch.manual_seed(0)
    save_run(folder, create_model(cfg.model.name, **cfg.model.args), cfg, tokenizer)
    records = [{"step": s, "split": "train", "loss": 3.3 / (1 + s / 300), "samples_per_sec": 5000.0}
               for s in range(20, 401, 20)] + [{"step": 400, "split": "val", "loss": 1.9, "bpc": 2.7}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    """A single-run page (text run) and a 5-run comparison page with curves against time and accuracy vs blocks."""
    tmp = tmp_path_factory.mktemp("pages")
    single = text_run(tmp / "a_text_run_with_a_rather_long_folder_name_that_must_wrap_somewhere_on_small_screens")
    assert main(["report", str(single), "--samples", "3", "--out", str(tmp / "single.html")]) == 0
    runs = [fake_image_run(tmp / f"cifar_mixer_{depth}_blocks_with_a_long_descriptive_run_name", depth, steps, acc)
            for depth, steps, acc in zip(range(1, 6), (321, 900, 2000, 5000, 8718), (.61, .68, .71, .70, .69))]
    assert main(["report", *map(str, runs), "--x", "time", "--vs", "model.depth",
                 "--out", str(tmp / "compare.html")]) == 0
    return {"single": tmp / "single.html", "compare": tmp / "compare.html"}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", ["single", "compare"])
def test_report_page_never_overflows_the_window(browser, pages, tmp_path, name, width):
    screenshot = tmp_path / f"{name}_{width}.png"
    layout = measure_and_screenshot(browser, pages[name], width, screenshot)
    assert layout["innerWidth"] == width
    assert layout["scrollWidth"] <= width, layout
    assert layout["overflowing"] == [], layout
    if name == "compare":  # the config-differences table (5 long run names) is wider than the page: it scrolls
        assert any(inner > outer for inner, outer in layout["scrollBoxes"]), layout
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("ALLMLP_SCREENSHOTS")  # a folder to keep the screenshots in, for a look by eye
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / screenshot.name)
