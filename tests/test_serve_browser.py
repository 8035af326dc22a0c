"""`allmlp serve` in a real browser (headless Debian Chromium via Selenium): runs page, chat, classify, errors."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

from allmlp.checkpoint import load_run
from allmlp.generate import generate_text
from serve_support import IMAGE_RUN, LM_RUN, running_server, serve_runs  # noqa: F401  (fixture)
from test_report_browser import browser, set_inner_width  # noqa: F401  (fixture)

LONG = 100_000  # chars asked for where the answer must still be streaming when the test looks (it is stopped)


@pytest.fixture(scope="module")
def site(serve_runs):
    """A server whose answers may be long enough to be stopped by hand."""
    with running_server(serve_runs, max_new_tokens=LONG) as server:
        yield server


def wait(driver, condition, seconds: float = 60):
    """Wait for `condition(driver)` to be true (bounds the wait; nothing is timed).

    The pages redraw their tables in place, so an element found a moment ago can be gone: that counts as
    "not yet" and the condition is asked again."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05,
                         ignored_exceptions=(StaleElementReferenceException,)).until(condition)


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    """Save the window as PNG in the test's folder (and in $ALLMLP_SCREENSHOTS when set, for a look by eye)."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000
    keep = os.environ.get("ALLMLP_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
    return path


def by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def all_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def set_value(driver, selector: str, value) -> None:
    element = by_css(driver, selector)
    element.clear()
    element.send_keys(str(value))


def ask(driver, prompt: str) -> None:
    """Type a prompt and press Enter."""
    from selenium.webdriver.common.keys import Keys

    box = by_css(driver, "#prompt")
    box.send_keys(prompt)
    box.send_keys(Keys.ENTER)


def answers(driver) -> list[str]:
    """The answers' text as streamed (textContent: new lines and spaces as they are)."""
    return [element.get_property("textContent") for element in all_css(driver, ".turn.model pre")]


def generations(site) -> dict:
    return httpx.get(f"{site.url}/api/generations").json()


def test_runs_page_lists_filters_sorts_and_updates_live(browser, site, serve_runs, tmp_path):
    set_inner_width(browser, 1280)
    browser.get(site.url + "/")
    wait(browser, lambda d: [r.get_attribute("data-run") for r in all_css(d, "#runs tbody tr")] == [IMAGE_RUN, LM_RUN])
    lm_text, lm_links = wait(browser, lambda d: (by_css(d, f'tr[data-run="{LM_RUN}"]').text, [
        a.text for a in by_css(d, f'tr[data-run="{LM_RUN}"]').find_elements("css selector", "td.links a")]))
    assert "causal_mixer" in lm_text and "finished" in lm_text
    assert lm_links == ["chat", "report", "figures"]
    set_value(browser, "#filter", "tiny_l")
    wait(browser, lambda d: [r.get_attribute("data-run") for r in all_css(d, "#runs tbody tr")] == [LM_RUN])
    set_value(browser, "#filter", "")
    by_css(browser, 'th[data-key="name"]').click()  # sorted by name already: a click turns the order round
    wait(browser, lambda d: [r.get_attribute("data-run") for r in all_css(d, "#runs tbody tr")] == [LM_RUN, IMAGE_RUN])
    browser.execute_script("window.notReloaded = 42")
    live = serve_runs / "live"
    shutil.copytree(serve_runs / LM_RUN, live)
    try:
        (live / "config.yaml").write_text((live / "config.yaml").read_text().replace("max_steps: 6", "max_steps: 500"))
        with open(live / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 40, "split": "train", "loss": 1.25, "samples_per_sec": 128.0}) + "\n")
        fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a training holds its folder
        try:
            status = wait(browser, lambda d: next((r.find_element("css selector", "td.status").text
                                                   for r in all_css(d, "#runs tbody tr")
                                                   if r.get_attribute("data-run") == "live"), None))
            assert status == "running step 40 / 500 · loss 1.250 · 8 min left"  # 460 steps x 128 chars at 128/s
            screenshot(browser, tmp_path, "serve_runs")
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(live)
    wait(browser, lambda d: len(all_css(d, "#runs tbody tr")) == 2)
    assert browser.execute_script("return window.notReloaded") == 42  # refreshed in place, never reloaded


def test_chat_streams_and_stop_stops_the_server(browser, site, tmp_path):
    set_inner_width(browser, 1280)
    browser.get(site.url + "/")
    wait(browser, lambda d: all_css(d, f'tr[data-run="{LM_RUN}"] td.links a'))
    by_css(browser, f'tr[data-run="{LM_RUN}"] td.links a').click()  # "chat"
    wait(browser, lambda d: "context 16 chars" in by_css(d, "#about").text)
    set_value(browser, "#length", LONG)
    ask(browser, "to be or not")
    # characters arrive while the server is still generating
    wait(browser, lambda d: len(answers(d)[0]) >= 20)
    assert by_css(browser, ".turn.model .status").text == "generating…"
    running = generations(site)["active"]
    assert len(running) == 1 and running[0]["max_new_tokens"] == LONG and not running[0]["finished"]
    by_css(browser, "#stop").click()
    status = wait(browser, lambda d: by_css(d, ".turn.model .status").text.startswith("[stopped after") and
                  by_css(d, ".turn.model .status").text)
    wait(browser, lambda d: not generations(site)["active"])
    stopped = next(g for g in generations(site)["recent"] if g["id"] == running[0]["id"])
    assert stopped["stopped"] and stopped["finished"] and 20 <= stopped["chars"] < LONG
    shown = int(status.split()[2])
    assert shown <= stopped["chars"] and len(answers(browser)[0]) == shown
    assert not by_css(browser, "#send").get_property("disabled")


def test_temperature_zero_gives_the_same_text_twice(browser, site, serve_runs, tmp_path):
    set_inner_width(browser, 1280)
    browser.get(f"{site.url}/chat/{LM_RUN}")
    set_value(browser, "#temperature", 0)
    set_value(browser, "#length", 120)
    for count in (1, 2):
        ask(browser, "love and")
        wait(browser, lambda d: sum(e.text.startswith("120 chars in") for e in all_css(d, ".turn.model .status"))
             == count)
    first, second = answers(browser)
    model, _, tokenizer = load_run(serve_runs / LM_RUN)
    assert first == second == generate_text(model, tokenizer, "love and", 120, temperature=0)
    screenshot(browser, tmp_path, "serve_chat")


def test_unknown_characters_are_refused_with_the_runs_policy(browser, site):
    browser.get(f"{site.url}/chat/{LM_RUN}")
    ask(browser, "xz")
    error = wait(browser, lambda d: all_css(d, ".turn.model p.error"))[0]
    assert error.text == ("the prompt holds characters this model never saw: 'x', 'z' (this run's "
                          "data.unknown_chars is error, so such prompts are refused)")


def test_chats_in_two_tabs_stream_at_once(browser, site):
    first = browser.current_window_handle
    browser.get(f"{site.url}/chat/{LM_RUN}")
    set_value(browser, "#length", LONG)
    ask(browser, "night")
    wait(browser, lambda d: len(answers(d)[0]) >= 5)
    browser.switch_to.new_window("tab")
    second = browser.current_window_handle
    try:
        browser.get(f"{site.url}/chat/{LM_RUN}")
        set_value(browser, "#length", LONG)
        ask(browser, "day")
        wait(browser, lambda d: len(answers(d)[0]) >= 5)
        assert len(generations(site)["active"]) == 2  # both answers are being generated at the same time
        for handle in (second, first):
            browser.switch_to.window(handle)
            before = len(answers(browser)[0])
            wait(browser, lambda d: len(answers(d)[0]) > before)  # still streaming in this tab
            by_css(browser, "#stop").click()
            wait(browser, lambda d: by_css(d, ".turn.model .status").text.startswith("[stopped after"))
        wait(browser, lambda d: not generations(site)["active"])
    finally:
        browser.switch_to.window(second)
        browser.close()
        browser.switch_to.window(first)


def test_classify_an_uploaded_png_shows_five_classes_summing_to_one(browser, site, tmp_path):
    set_inner_width(browser, 1280)
    picture = tmp_path / "shirt.png"
    Image.new("RGB", (640, 480), (30, 30, 30)).save(picture)
    Image.new("RGB", (240, 300), (220, 220, 220)).save(tmp_path / "inner.png")
    canvas = Image.open(picture)
    canvas.paste(Image.open(tmp_path / "inner.png"), (200, 90))
    canvas.save(picture)
    browser.get(f"{site.url}/classify/{IMAGE_RUN}")
    wait(browser, lambda d: len(all_css(d, "#samples img")) == 8)
    wait(browser, lambda d: len(all_css(d, "#figures img")) == 2)  # token mixing and patch projections
    by_css(browser, "#file").send_keys(str(picture))
    wait(browser, lambda d: len(all_css(d, "#top tbody tr")) == 5)
    shown = [float(cell.text.rstrip("%")) for cell in all_css(browser, "#top td.probability")]
    rest = float(by_css(browser, "#rest").text.split(": ")[1].rstrip("%"))
    assert shown == sorted(shown, reverse=True)
    assert sum(shown) + rest == pytest.approx(100, abs=0.35)  # each figure rounded to 0.1%
    seen = by_css(browser, "#seen")
    assert browser.execute_script("return arguments[0].naturalWidth", seen) == 224
    assert "640 × 480 RGB → grey 28 × 28" in by_css(browser, "#seen-note").text
    seen_box, figures_box = (browser.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                                    "return [r.left, r.right, r.top, r.bottom]", by_css(browser, css))
                             for css in ("#seen", "#figures img"))
    assert figures_box[0] >= seen_box[1] and figures_box[2] < seen_box[3]  # beside the model's input, not below
    screenshot(browser, tmp_path, "serve_classify")
    all_css(browser, "#samples button")[0].click()  # a test-set image
    wait(browser, lambda d: by_css(d, "#seen-note").text.startswith("test image ("))
    assert len(all_css(browser, "#top tbody tr")) == 5


def test_an_image_dropped_on_the_page_is_classified(browser, site, tmp_path):
    import base64
    import io

    buffer = io.BytesIO()
    Image.new("L", (90, 60), 200).save(buffer, format="JPEG")  # a grey JPEG, wider than tall
    browser.get(f"{site.url}/classify/{IMAGE_RUN}")
    wait(browser, lambda d: "10 classes" in by_css(d, "#about").text)
    browser.execute_script("""
        const bytes = Uint8Array.from(atob(arguments[0]), c => c.charCodeAt(0));
        const dropped = new DataTransfer();
        dropped.items.add(new File([bytes], "dropped.jpg", {type: "image/jpeg"}));
        document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dropped, bubbles: true,
                                                                           cancelable: true}));""",
                           base64.b64encode(buffer.getvalue()).decode())
    wait(browser, lambda d: len(all_css(d, "#top tbody tr")) == 5)
    assert by_css(browser, "#seen-note").text.startswith("dropped.jpg: 90 × 60 L → grey 28 × 28")


def test_paths_outside_the_runs_and_a_50_megapixel_png_give_clean_errors(browser, site, tmp_path):
    browser.get(f"{site.url}/chat/%2e%2e%2foutside_run")
    assert json.loads(by_css(browser, "body").text) == {"error": "no run named '../outside_run' under the served "
                                                                 "runs folder"}
    browser.get(f"{site.url}/classify/{IMAGE_RUN}")
    status = browser.execute_async_script(
        "const done = arguments[0]; fetch('/api/runs/%2e%2e%2f%2e%2e/etc').then(r => r.json().then(b => "
        "done([r.status, b.error])))")
    assert status == [404, "no run named '../../etc' under the served runs folder"]
    bomb = tmp_path / "bomb.png"
    Image.new("L", (7072, 7072)).save(bomb)  # 50 megapixels in a few kilobytes
    by_css(browser, "#file").send_keys(str(bomb))
    error = wait(browser, lambda d: by_css(d, "#error").is_displayed() and by_css(d, "#error").text)
    assert error == "the image has more than 16,000,000 pixels (the limit)"
