"""`allmlp serve`'s JSON API against a real uvicorn server on 127.0.0.1: every endpoint and every refused request."""

from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from allmlp.checkpoint import load_run
from allmlp.data.images import get_dataset, load_images, normalize
from allmlp.generate import generate_text
from allmlp.models import count_parameters
from serve_support import IMAGE_RUN, LM_RUN, running_server, serve_runs, server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream."""
    found = []
    for block in response.text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def generate(server, run: str = LM_RUN, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/api/runs/{run}/generate", json=body, timeout=60)


def streamed_text(response: httpx.Response) -> str:
    return "".join(data["text"] for event, data in events(response) if event == "text")


def png(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def classify(server, data: bytes, run: str = IMAGE_RUN, name: str = "image.png") -> httpx.Response:
    return httpx.post(f"{server.url}/api/runs/{run}/classify", files={"image": (name, data)}, timeout=60)


def wait_until(condition, seconds: float = 20.0):
    """Poll `condition` until it returns something true (no timing is asserted: this only bounds the wait)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("the condition never became true")


def test_runs_lists_every_run_folder_with_its_summary(server, serve_runs):
    body = httpx.get(f"{server.url}/api/runs").json()
    assert body["runs_dir"] == str(serve_runs.resolve())
    runs = {run["name"]: run for run in body["runs"]}
    assert sorted(runs) == [IMAGE_RUN, LM_RUN]  # `escape` leads out of RUNS_DIR: never listed
    lm, image = runs[LM_RUN], runs[IMAGE_RUN]
    assert (lm["model"], lm["task"], lm["can_chat"], lm["can_classify"]) == ("causal_mixer", "text", True, False)
    assert (image["model"], image["task"], image["can_chat"], image["can_classify"]) == \
        ("mixer_tiny_28", "image", False, True)
    for name, run in runs.items():
        model, _, _ = load_run(serve_runs / name)
        assert run["params"] == count_parameters(model)
        assert run["step"] == run["max_steps"] and run["has_weights"] and not run["status"]["running"]
        records = [json.loads(line) for line in (serve_runs / name / "metrics.jsonl").read_text().splitlines()]
        assert run["metrics"]["test/loss"] == pytest.approx(next(r["loss"] for r in records if r["split"] == "test"))
        assert run["last_change"] == pytest.approx(max(p.stat().st_mtime for p in (serve_runs / name).iterdir()
                                                       if p.name in ("config.yaml", "model.safetensors",
                                                                     "trainer_state.safetensors", "metrics.jsonl")))


def test_a_training_run_shows_live_step_loss_and_time_left(server, serve_runs):
    live = serve_runs / "live"
    shutil.copytree(serve_runs / LM_RUN, live)
    try:
        config = (live / "config.yaml").read_text().replace("max_steps: 6", "max_steps: 100")
        (live / "config.yaml").write_text(config)
        with open(live / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps({"step": 40, "split": "train", "loss": 1.25, "samples_per_sec": 1280.0}) + "\n")
        fd = os.open(live, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a training holds while it runs
        try:
            run = next(r for r in httpx.get(f"{server.url}/api/runs").json()["runs"] if r["name"] == "live")
            # 60 steps left at 1280 samples/s, 8 rows x 16 predicted chars per step: 60 * 128 / 1280 = 6 s
            assert run["status"] == {"running": True, "step": 40, "loss": 1.25, "time_left_s": pytest.approx(6.0)}
        finally:
            os.close(fd)
        run = next(r for r in httpx.get(f"{server.url}/api/runs").json()["runs"] if r["name"] == "live")
        assert run["status"] == {"running": False, "step": 40, "loss": 1.25}
    finally:
        shutil.rmtree(live)


def test_a_training_before_its_first_checkpoint_is_listed_while_it_runs(server, serve_runs):
    young = serve_runs / "young"  # what a training leaves in its first checkpoint interval: config and metrics only
    young.mkdir()
    try:
        shutil.copy(serve_runs / IMAGE_RUN / "config.yaml", young / "config.yaml")
        (young / "metrics.jsonl").write_text(json.dumps({"step": 5, "split": "train", "loss": 2.0,
                                                         "samples_per_sec": 100.0}) + "\n")
        fd = os.open(young, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            run = next(r for r in httpx.get(f"{server.url}/api/runs").json()["runs"] if r["name"] == "young")
            assert run["status"]["running"] and run["status"]["step"] == 5 and run["status"]["loss"] == 2.0
            assert not run["has_weights"] and not run["can_classify"] and not run["can_chat"]
            assert httpx.post(f"{server.url}/api/runs/young/classify").status_code in (400, 404, 409, 422)
        finally:
            os.close(fd)
        names = [r["name"] for r in httpx.get(f"{server.url}/api/runs").json()["runs"]]
        assert "young" not in names  # its training ended without a checkpoint: nothing to show
    finally:
        shutil.rmtree(young)


@pytest.mark.parametrize("name", [LM_RUN, LM_RUN.replace("/", "%2F")])
def test_one_run_with_its_config_and_what_the_model_takes(server, name):
    body = httpx.get(f"{server.url}/api/runs/{name}").json()
    assert body["name"] == LM_RUN and body["config"]["model"]["name"] == "causal_mixer"
    _, _, tokenizer = load_run(server.app.state.root / LM_RUN)
    assert body["language_model"] == {"context_length": 16, "lm_kind": "causal", "unknown_chars": "error",
                                      "chars": "".join(tokenizer.chars), "max_prompt_chars": 4000,
                                      "max_new_tokens": 2000}
    image = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}").json()["image_model"]
    assert image["input_shape"] == [1, 28, 28] and image["classes"] == list(get_dataset("fashion_mnist").classes)


# Clients drop plain `..` and `.` parts before sending (as browsers do); percent-encoded ones reach the server.
BAD_NAMES = ["%2e%2e", "%2e%2e/runs/text/tiny_lm", "%2e%2e/%2e%2e/etc", "text/%2e%2e/text/tiny_lm", "text/%2E/tiny_lm",
             "%2Fetc", "escape", "text", "missing", "text/tiny_lm%5Cx", "text%00",
             # too long for the file system (ENAMETOOLONG): a name, then a path of names each too long
             pytest.param("a" * 5000, id="long-name"), pytest.param("/".join(["b" * 300] * 3), id="long-parts")]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("POST", "/generate"), ("POST", "/classify"),
                                           ("GET", "/figures"), ("GET", "/test-images")])
def test_names_outside_the_runs_folder_or_not_runs_are_404(server, name, method, suffix):
    if method == "POST" and suffix == "/classify":
        response = httpx.post(f"{server.url}/api/runs/{name}{suffix}", files={"image": ("a.png", b"x")})
    else:
        response = httpx.request(method, f"{server.url}/api/runs/{name}{suffix}", json={} if method == "POST" else None)
    assert response.status_code == 404, response.text
    assert response.json()["error"].startswith("no run named "), response.json()


@pytest.mark.parametrize("page", ["chat", "classify", "figures", "report"])
def test_pages_of_names_outside_the_runs_folder_are_404(server, page):
    for name in ("%2e%2e/outside_run", "escape", "nothing", "a" * 5000):
        response = httpx.get(f"{server.url}/{page}/{name}")
        assert response.status_code == 404 and response.json()["error"].startswith("no run named")


def test_streamed_text_is_what_generate_gives_for_the_same_settings(server):
    model, _, tokenizer = load_run(server.app.state.root / LM_RUN)
    settings = {"max_new_tokens": 50, "temperature": 0.9, "top_k": 5, "top_p": 0.95, "seed": 7}
    response = generate(server, prompt="to be or", **settings)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    kinds = [event for event, _ in events(response)]
    assert kinds[0] == "start" and kinds[-1] == "done" and set(kinds[1:-1]) == {"text"}
    done = events(response)[-1][1]
    assert (done["chars"], done["stopped"], done["finished"]) == (50, False, True)
    assert streamed_text(response) == generate_text(model, tokenizer, "to be or", **settings)
    greedy = [streamed_text(generate(server, prompt="love", max_new_tokens=30, temperature=0)) for _ in range(2)]
    assert greedy[0] == greedy[1] == generate_text(model, tokenizer, "love", 30, temperature=0)


def test_unknown_prompt_chars_follow_the_runs_policy(server, serve_runs):
    response = generate(server, prompt="xzé to")
    assert response.status_code == 400
    assert response.json()["error"] == ("the prompt holds characters this model never saw: 'x', 'z', 'é' "
                                        "(this run's data.unknown_chars is error, so such prompts are refused)")
    dropping = serve_runs / "text" / "dropping"
    shutil.copytree(serve_runs / LM_RUN, dropping)
    try:
        (dropping / "config.yaml").write_text((dropping / "config.yaml").read_text()
                                              .replace("unknown_chars: error", "unknown_chars: drop"))
        response = generate(server, "text/dropping", prompt="xto bé", max_new_tokens=20, seed=3)
        start = events(response)[0][1]
        assert start["note"] == ("dropped 2 characters this model never saw: 'x', 'é' (this run's "
                                 "data.unknown_chars is drop)")
        model, _, tokenizer = load_run(dropping)
        assert streamed_text(response) == generate_text(model, tokenizer, "to b", 20, seed=3)
    finally:
        shutil.rmtree(dropping)


@pytest.mark.parametrize("body,status,message", [
    ({"prompt": "t" * 4001}, 400, "prompt is 4,001 characters; the limit is 4,000"),
    ({"max_new_tokens": 2001}, 400, "max_new_tokens must be <= 2000, got 2001"),
    ({"max_new_tokens": -1}, 400, "max_new_tokens must be >= 0, got -1"),
    ({"temperature": -0.5}, 400, "temperature must be >= 0, got -0.5"),
    ({"top_k": 0}, 400, "top_k must be >= 1, got 0"),
    ({"top_p": 1.5}, 400, "top_p must be in (0, 1], got 1.5"),
    ({"seed": -1}, 400, "seed must be in 0..9223372036854775807, got -1"),
    ({"temperature": "warm"}, 422, "temperature: Input should be a valid number"),
    ({"temperature": float("nan")}, 422, "temperature: Input should be a finite number"),
    ({"max_new_tokens": 2.5}, 422, "max_new_tokens: Input should be a valid integer"),
    ({"promt": "typo"}, 422, "promt: Extra inputs are not permitted"),
    ({"prompt": "\ud800"}, 400, "prompt is not UTF-8 text (code point U+D800 at character 1); give the text in UTF-8"),
])
def test_bad_generation_settings_are_one_line_4xx(server, body, status, message):
    response = httpx.post(f"{server.url}/api/runs/{LM_RUN}/generate",
                          content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"].startswith(message), response.json()


def test_extreme_but_valid_settings_stream_an_answer(server):
    greedy = streamed_text(generate(server, prompt="love", max_new_tokens=20, temperature=0))
    for settings in ({"temperature": 1e-300}, {"top_p": 1e-300, "seed": 1}, {"temperature": 1e300, "top_k": 10**30}):
        response = generate(server, prompt="love", max_new_tokens=20, **settings)
        assert [event for event, _ in events(response)][-1] == "done", (settings, response.text)
        if "top_k" not in settings:  # a vanishing temperature or nucleus keeps only the likeliest char: greedy
            assert streamed_text(response) == greedy, settings


def test_malformed_bodies_and_wrong_runs_are_4xx(server):
    url = f"{server.url}/api/runs/{LM_RUN}/generate"
    response = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["error"]
    response = httpx.post(url, content=json.dumps({"prompt": "t" * 70_000}),
                          headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "request body over 65,536 bytes"
    response = generate(server, IMAGE_RUN)
    assert response.status_code == 400 and "is not a character language model run" in response.json()["error"]
    response = classify(server, png(Image.new("L", (28, 28))), run=LM_RUN)
    assert response.status_code == 400 and response.json()["error"] == f"{LM_RUN} is not an image classification run"
    assert httpx.get(f"{server.url}/api/nothing").json() == {"error": "no such page: /api/nothing"}


def test_stop_ends_the_generation_on_the_server(server):
    with httpx.stream("POST", f"{server.url}/api/runs/{LM_RUN}/generate", json={"max_new_tokens": 2000},
                      timeout=60) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        stopped = httpx.post(f"{server.url}/api/generations/{start['id']}/stop").json()
        assert stopped["id"] == start["id"]
        rest = "\n".join(lines)
    done = json.loads(rest.split("event: done\ndata: ")[1].split("\n")[0])
    assert done["stopped"] and done["finished"] and done["chars"] < 2000
    recent = httpx.get(f"{server.url}/api/generations").json()
    assert start["id"] not in [g["id"] for g in recent["active"]]
    assert next(g for g in recent["recent"] if g["id"] == start["id"]) == done
    assert httpx.post(f"{server.url}/api/generations/g999999/stop").status_code == 404


def test_a_client_that_goes_away_stops_its_generation(server):
    with httpx.stream("POST", f"{server.url}/api/runs/{LM_RUN}/generate", json={"max_new_tokens": 2000},
                      timeout=60) as response:
        lines = response.iter_lines()
        start = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        next(line for line in lines if line.startswith("event: text"))
    finished = wait_until(lambda: next((g for g in httpx.get(f"{server.url}/api/generations").json()["recent"]
                                        if g["id"] == start["id"]), None))
    assert finished["stopped"] and 0 < finished["chars"] < 2000


def test_past_the_generation_limit_a_request_waits_then_gets_503(serve_runs):
    with running_server(serve_runs, max_generations=1, busy_wait_s=0.2) as busy:
        with httpx.stream("POST", f"{busy.url}/api/runs/{LM_RUN}/generate", json={"max_new_tokens": 2000},
                          timeout=60) as first:
            lines = first.iter_lines()
            start = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
            refused = generate(busy, max_new_tokens=5)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"] == ("the server is busy: 1 generations are running (the limit, allmlp "
                                               "serve --max-generations); try again in a moment")
            httpx.post(f"{busy.url}/api/generations/{start['id']}/stop")
        assert wait_until(lambda: not httpx.get(f"{busy.url}/api/generations").json()["active"])
        assert generate(busy, max_new_tokens=5).status_code == 200  # the slot came back


def test_classify_gives_the_models_probabilities_for_a_test_image(server, serve_runs):
    model, cfg, _ = load_run(serve_runs / IMAGE_RUN)
    images, labels = load_images("fashion_mnist", cfg.data.path)["test"]
    spec = get_dataset("fashion_mnist")
    sample = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/test-images/3.png")
    assert sample.status_code == 200 and sample.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(sample.content))), images[3, 0].numpy())
    response = classify(server, sample.content)
    assert response.status_code == 200, response.text
    body = response.json()
    with torch.no_grad():
        expected = model(normalize(images[3:4], spec.mean, spec.std))[0].softmax(-1)
    probabilities = torch.tensor(list(body["probabilities"].values()))
    assert list(body["probabilities"]) == list(spec.classes)
    assert torch.allclose(probabilities, expected, atol=1e-5) and probabilities.sum().item() == pytest.approx(1, 1e-5)
    top = body["top"]
    assert len(top) == 5 and [t["index"] for t in top] == expected.topk(5).indices.tolist()
    assert [t["label"] for t in top] == [spec.classes[t["index"]] for t in top]
    seen = Image.open(io.BytesIO(__import__("base64").b64decode(body["model_input"]["png"].split(",")[1])))
    assert seen.size == (224, 224) and seen.mode == "L"  # 28 x 28 enlarged 8 times
    listing = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/test-images").json()
    assert listing["note"] is None and [i["label"] for i in listing["images"]] == \
        [spec.classes[int(label)] for label in labels[:8]]


def test_any_size_colour_grey_or_transparent_image_becomes_the_models_input(server):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (300, 500, 3), dtype=np.uint8))  # wide colour photo
    for data, name in ((png(photo), "photo.png"), (png(photo, "JPEG"), "photo.jpg"),
                       (png(photo.convert("L").resize((9, 13))), "small.png"),
                       (png(Image.new("RGBA", (40, 40), (255, 255, 255, 0))), "clear.png")):
        body = classify(server, data, name=name).json()
        assert body["model_input"]["shape"] == [1, 28, 28], name
        assert sum(body["probabilities"].values()) == pytest.approx(1, 1e-5)
    spec = get_dataset("fashion_mnist")
    black = (0 - spec.mean[0]) / spec.std[0]
    assert body["model_input"]["min"] == pytest.approx(black) == body["model_input"]["max"]  # alpha 0 over black


@pytest.mark.parametrize("make,status,message", [
    (lambda: png(Image.new("L", (7072, 7072))), 413, "the image has more than 16,000,000 pixels"),
    (lambda: png(Image.new("L", (4000, 4001))), 413, "the image is 4000 x 4001 = 16,004,000 pixels; the limit is"),
    (lambda: b"GIF89a" + bytes(100), 415, "not a PNG or JPEG image"),
    (lambda: png(Image.new("L", (64, 64)), "GIF"), 415, "not a PNG or JPEG image"),
    (lambda: png(Image.new("RGB", (64, 64)))[:60], 400, "the PNG image cannot be decoded"),
    (lambda: b"", 400, "the upload is empty"),
    (lambda: b"\x89PNG\r\n\x1a\n" + bytes(11 * 1024 * 1024), 413, "request body over 10,551,296 bytes"),
])
def test_bad_uploads_are_one_line_4xx(server, make, status, message):
    response = classify(server, make())
    assert response.status_code == status, response.text
    assert response.json()["error"].startswith(message), response.json()


def test_an_upload_without_its_file_field_is_422(server):
    response = httpx.post(f"{server.url}/api/runs/{IMAGE_RUN}/classify", files={"picture": ("a.png", b"x")})
    assert response.status_code == 422 and response.json()["error"] == "image: Field required"


def test_image_endpoints_of_a_language_model_and_a_test_image_out_of_range_are_4xx(server):
    for path in ("test-images", "test-images/0.png"):
        response = httpx.get(f"{server.url}/api/runs/{LM_RUN}/{path}")
        assert response.status_code == 400
        assert response.json() == {"error": "tiny_lm is not an image classification run"}
    response = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/test-images/8.png")
    assert response.status_code == 404 and response.json() == {"error": "no test image 8; 0..7"}
    response = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/test-images/first.png")
    assert response.status_code == 422 and response.json()["error"].startswith("path.number: Input should be a valid "
                                                                              "integer")
    assert httpx.put(f"{server.url}/api/runs").json() == {"error": "Method Not Allowed"}


def test_models_are_loaded_once_kept_least_recently_used_and_reloaded_when_their_weights_change(serve_runs, tmp_path):
    from allmlp.serve.models import ModelCache

    lm, image = shutil.copytree(serve_runs / LM_RUN, tmp_path / "lm"), serve_runs / IMAGE_RUN
    cache = ModelCache(capacity=1)
    first = cache.get(lm)
    assert cache.get(lm) is first  # loaded once, shared by every request
    assert cache.get(image) is not first and cache.get(lm) is not first  # capacity 1: the image run pushed it out
    again = cache.get(lm)
    weights = lm / "model.safetensors"
    os.utime(weights, (weights.stat().st_atime, weights.stat().st_mtime + 5))  # a training wrote a new checkpoint
    assert cache.get(lm) is not again
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        ModelCache(capacity=0)


def test_a_run_whose_data_is_elsewhere_has_no_test_images_and_says_why(server, serve_runs):
    moved = serve_runs / "images" / "moved"
    shutil.copytree(serve_runs / IMAGE_RUN, moved)
    try:
        config = (moved / "config.yaml").read_text()
        data_path = next(line for line in config.splitlines() if line.strip().startswith("path:"))
        (moved / "config.yaml").write_text(config.replace(data_path, "  path: /nonexistent/fashion"))
        body = httpx.get(f"{server.url}/api/runs/images/moved/test-images").json()
        assert body["images"] == [] and body["note"].startswith("no test images: the run's data (fashion_mnist) "
                                                                "is not on this machine")
        assert httpx.get(f"{server.url}/api/runs/images/moved/test-images/0.png").status_code == 404
        assert classify(server, png(Image.new("L", (28, 28))), run="images/moved").status_code == 200
    finally:
        shutil.rmtree(moved)


def test_figures_and_report_are_rendered_without_writing_into_the_run(server, serve_runs):
    before = sorted(p.name for p in (serve_runs / IMAGE_RUN).iterdir())
    figures = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/figures", timeout=60).json()["figures"]
    names = [f["name"] for f in figures]
    assert {"curves", "token_mixing", "patch_projections", "confusion_matrix"} <= set(names)
    for figure in figures:
        picture = httpx.get(server.url + figure["url"])
        assert picture.content.startswith(b"\x89PNG") and Image.open(io.BytesIO(picture.content)).width > 100
    missing = httpx.get(f"{server.url}/api/runs/{IMAGE_RUN}/figures/nope.png")
    assert missing.status_code == 404 and missing.json()["error"].startswith("no figure 'nope' for this run; it has:")
    report = httpx.get(f"{server.url}/report/{LM_RUN}", timeout=120)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "<h1>allmlp run: tiny_lm</h1>" in report.text and "Generated samples" in report.text
    assert sorted(p.name for p in (serve_runs / IMAGE_RUN).iterdir()) == before
    assert not (serve_runs / LM_RUN / "report.html").exists()


@pytest.mark.parametrize("path", ["/", f"/chat/{LM_RUN}", f"/classify/{IMAGE_RUN}", f"/figures/{IMAGE_RUN}", "/docs"])
def test_pages_load_nothing_from_other_hosts(server, path):
    import re

    response = httpx.get(server.url + path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', response.text) + re.findall(r"url: '([^']+)'", response.text)
    assert sources and all(s.startswith("/") or s.startswith("#") for s in sources), sources
    for source in sources:
        if source.startswith("/static"):
            assert httpx.get(server.url + source).status_code == 200, source


def test_the_static_files_name_no_other_host():
    for path in (ROOT / "src" / "allmlp" / "serve" / "static").iterdir():
        assert "http://" not in path.read_text() and "https://" not in path.read_text(), path.name


def test_openapi_lists_the_api(server):
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    assert {"/api/runs", "/api/runs/{run}", "/api/runs/{run}/generate", "/api/runs/{run}/classify"} <= set(paths)


def test_the_serve_command_prints_its_url_and_serves(serve_runs):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    # as from a terminal: Ctrl-C delivered (a runner that started us in the background may have set SIGINT ignored)
    process = subprocess.Popen([sys.executable, "-m", "allmlp", "serve", str(serve_runs), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = process.stdout.readline()
        assert line.startswith(f"allmlp serve: {serve_runs.resolve()} at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        assert [r["name"] for r in httpx.get(f"{url}api/runs", timeout=30).json()["runs"]] == [IMAGE_RUN, LM_RUN]
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        process.wait(timeout=30)
    assert process.returncode == 130 and process.stderr.read() == ""  # a clean stop: no traceback


def test_the_serve_command_refuses_a_taken_port_or_one_out_of_range_in_one_line(serve_runs, capsys):
    import socket

    from allmlp.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(serve_runs), "--port", str(port)]) == 2
    assert capsys.readouterr().err == (f"allmlp serve: error: cannot listen on 127.0.0.1:{port} (Address already in "
                                       "use); choose another --port\n")
    assert main(["serve", str(serve_runs), "--port", "70000"]) == 2
    assert capsys.readouterr().err == "allmlp serve: error: --port must be in 0..65535, got 70000\n"


def test_the_serve_command_refuses_a_missing_folder_in_one_line(tmp_path, capsys):
    from allmlp.cli import main

    assert main(["serve", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"allmlp serve: error: runs folder not found: {tmp_path / 'nope'}\n"


def test_the_readme_serve_section_quotes_serve_json():
    results = json.loads((ROOT / "benchmarks" / "results" / "serve.json").read_text())
    section = (ROOT / "README.md").read_text().split("\n## Serve\n")[1].split("\n## ")[0]
    assert "docs/images/serve_chat.png" in section and "docs/images/serve_classify.png" in section
    clients = results["clients"]
    quoted = [results["generate_chars_per_s"], clients["1"]["chars_per_s"], f"{results['web_overhead_ratio']:.3f}",
              *(clients[c]["ttfc_p50_s"] for c in ("1", "4", "16")), clients["16"]["total_chars_per_s"],
              results["server_rss_mb"]]
    for number in quoted:
        assert str(number) in section, f"README's Serve section does not quote {number} from serve.json"
    assert all(level["errors"] == 0 for level in clients.values()) and "0 errors" in section
