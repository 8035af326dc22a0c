"""`create_app(runs_dir)`: the FastAPI app behind `allmlp serve`: pages, JSON API, streaming generation, classify."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import tempfile
from importlib import resources
from pathlib import Path
from typing import Annotated

import torch
from fastapi import FastAPI, File, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..generate import check_prompt_text, check_sampling, stream_text
from .generation import CharChannel, Generations, ServerBusy
from .images import MAX_UPLOAD_BYTES, ImageRejected, decode_image, input_spec, model_input, png_bytes, top_classes
from .models import LoadedRun, ModelCache
from .runs import RunIndex, RunNotFound, resolve_run
from .web import ApiError, BodyLimit, Rendered, one_line, sse

STATIC = resources.files("allmlp.serve") / "static"
MAX_PROMPT_CHARS = 4000
MAX_NEW_TOKENS = 2000
TEST_IMAGES = 8
MAX_SEED = 2**63 - 1
STREAM_INTERVAL_S = 0.02  # at most 50 text events a second per answer


class GenerateRequest(BaseModel):
    """What a client may ask of a generation; ranges are checked with the same messages as `allmlp chat`."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = ""
    max_new_tokens: int = 200
    temperature: Annotated[float, Field(allow_inf_nan=False)] = 1.0
    top_k: int | None = None
    top_p: Annotated[float | None, Field(allow_inf_nan=False)] = None
    seed: int | None = None


def create_app(runs_dir: str | Path = "runs", max_generations: int = 4, busy_wait_s: float = 2.0,
               cache_size: int = 4, max_prompt_chars: int = MAX_PROMPT_CHARS,
               max_new_tokens: int = MAX_NEW_TOKENS) -> FastAPI:
    """The web app over the run folders under `runs_dir` (pages at /, JSON API at /api, OpenAPI page at /docs)."""
    root = Path(runs_dir).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"runs folder not found: {runs_dir}")
    index, cache, rendered = RunIndex(root), ModelCache(cache_size), Rendered()
    generations = Generations(max_generations, busy_wait_s)
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        generations.stop_all()  # at shutdown, running answers end at their next char

    app = FastAPIOffline(title="allmlp serve", summary=f"Chat with, classify with and browse the runs under {root}",
                  version="1", lifespan=lifespan)
    app.state.generations, app.state.cache, app.state.root = generations, cache, root
    app.add_middleware(BodyLimit)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(ApiError)
    async def api_error(request, err: ApiError):
        return JSONResponse({"error": err.message}, status_code=err.status)

    @app.exception_handler(RunNotFound)
    async def run_not_found(request, err):
        return JSONResponse({"error": str(err)}, status_code=404)

    @app.exception_handler(ServerBusy)
    async def busy(request, err):
        return JSONResponse({"error": str(err)}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(ImageRejected)
    async def image_rejected(request, err: ImageRejected):
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(ValueError)  # a run folder that cannot be loaded, a bad setting: the message says which
    async def bad_value(request, err):
        return JSONResponse({"error": str(err).splitlines()[0]}, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request, err: HTTPException):
        message = f"no such page: {request.url.path}" if err.status_code == 404 else str(err.detail)
        return JSONResponse({"error": message}, status_code=err.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, err: RequestValidationError):
        return JSONResponse({"error": "; ".join(one_line(e) for e in err.errors()[:3])}, status_code=422)

    @app.exception_handler(Exception)  # a bug: the client gets one line, the server's log the traceback
    async def internal(request, err):
        return JSONResponse({"error": f"internal error ({type(err).__name__}); see the server's log"},
                            status_code=500)

    def page(name: str) -> FileResponse:
        return FileResponse(str(STATIC / name), media_type="text/html")

    def loaded_run(run: str) -> tuple[Path, LoadedRun]:
        run_dir = resolve_run(root, run)
        return run_dir, cache.get(run_dir)

    # ---- pages ----

    @app.get("/", include_in_schema=False)
    def runs_page():
        return page("runs.html")

    @app.get("/chat/{run:path}", include_in_schema=False)
    def chat_page(run: str):
        resolve_run(root, run)
        return page("chat.html")

    @app.get("/classify/{run:path}", include_in_schema=False)
    def classify_page(run: str):
        resolve_run(root, run)
        return page("classify.html")

    @app.get("/figures/{run:path}", include_in_schema=False)
    def figures_page(run: str):
        resolve_run(root, run)
        return page("figures.html")

    @app.get("/report/{run:path}", include_in_schema=False, response_class=HTMLResponse)
    def report_page(run: str):
        """The run's `allmlp report` page, rendered in a temporary folder (never in the run folder)."""
        from ..report import single_report

        run_dir = resolve_run(root, run)

        def make() -> str:
            with tempfile.TemporaryDirectory() as tmp:
                return single_report(run_dir, Path(tmp) / "report.html").read_text(encoding="utf-8")

        return HTMLResponse(rendered.get("report", run_dir, make))

    # ---- JSON API ----

    @app.get("/api/runs", summary="every run folder under RUNS_DIR with its summary")
    def list_runs():
        summaries = []
        for name in index.names():
            try:
                summaries.append(index.summary(name))
            except (RunNotFound, ValueError, OSError) as err:  # a folder changing or broken right now
                summaries.append({"name": name, "problem": str(err).splitlines()[0]})
        return {"runs_dir": str(root), "runs": summaries}

    @app.get("/api/generations", summary="generations running now and the last ones finished")
    def list_generations():
        active, recent = generations.snapshot()
        return {"max_concurrent": generations.max_concurrent, "active": [g.public() for g in active],
                "recent": [g.public() for g in recent]}

    @app.post("/api/generations/{generation_id}/stop", summary="stop a running generation between two characters")
    def stop_generation(generation_id: str):
        generation = generations.find(generation_id)
        if generation is None:
            raise ApiError(404, f"no generation {generation_id!r}")
        generation.cancel.set()
        return generation.public()

    @app.get("/api/runs/{run:path}/figures", summary="the run's figures (curves, token mixing, patches, ...)")
    def list_figures(run: str):
        run_dir = resolve_run(root, run)
        quoted = run_url(run)
        return {"figures": [{"name": name, "url": f"/api/runs/{quoted}/figures/{name}.png"}
                            for name in run_figures(run_dir)]}

    @app.get("/api/runs/{run:path}/figures/{name}.png", summary="one figure as PNG")
    def figure(run: str, name: str):
        figures = run_figures(resolve_run(root, run))
        if name not in figures:
            raise ApiError(404, f"no figure {name!r} for this run; it has: {', '.join(figures) or 'none'}")
        return Response(figures[name], media_type="image/png")

    def run_figures(run_dir: Path) -> dict[str, bytes]:
        from ..viz import figures_for_run

        def make() -> dict[str, bytes]:
            loaded = cache.get(run_dir)  # the confusion matrix only where the test data is here (never downloaded)
            confusion = image_run(loaded) and test_images(run_dir, loaded)[1] is None
            with tempfile.TemporaryDirectory() as tmp:
                paths = figures_for_run(run_dir, tmp, confusion=confusion, log=lambda message: None)
                return {name: Path(path).read_bytes() for name, path in paths.items()}

        return rendered.get("figures", run_dir, make)

    @app.get("/api/runs/{run:path}/test-images", summary="a few test-set images of an image run, to classify")
    def list_test_images(run: str):
        run_dir, loaded = loaded_run(run)
        images, note = test_images(run_dir, loaded)
        quoted = run_url(run)
        return {"images": [{"index": i, "label": label, "url": f"/api/runs/{quoted}/test-images/{i}.png"}
                           for i, (label, _) in enumerate(images)], "note": note}

    @app.get("/api/runs/{run:path}/test-images/{number}.png", summary="one test-set image as PNG")
    def test_image(run: str, number: int):
        run_dir, loaded = loaded_run(run)
        images, note = test_images(run_dir, loaded)
        if not 0 <= number < len(images):
            raise ApiError(404, f"no test image {number}" + (f" ({note})" if note else f"; 0..{len(images) - 1}"))
        return Response(images[number][1], media_type="image/png")

    def test_images(run_dir: Path, loaded: LoadedRun) -> tuple[list[tuple[str, bytes]], str | None]:
        """(label, PNG) of the first test images, from the run's data where it is on this machine; else a note."""
        if not image_run(loaded):
            raise ApiError(400, f"{run_dir.name} is not an image classification run")

        def make():
            from ..data.cache import cache_dir
            from ..data.images import load_images

            cfg = loaded.cfg
            folder = cfg.data.path or str(cache_dir() / cfg.data.name)  # never fetch: no download from a server
            try:
                x, y = load_images(cfg.data.name, folder)["test"]
            except (OSError, ValueError, KeyError) as err:
                return [], f"no test images: the run's data ({cfg.data.name}) is not on this machine " \
                           f"({str(err).splitlines()[0]})"
            _, _, _, classes = input_spec(cfg)
            return [(classes[int(y[i])], png_bytes(x[i], side=0)) for i in range(min(TEST_IMAGES, len(x)))], None

        return rendered.get("test_images", run_dir, make)

    @app.get("/api/runs/{run:path}", summary="one run: summary, config and what the model takes")
    def run_details(run: str):
        run_dir, loaded = loaded_run(run)
        details = {**index.summary(run), "config": loaded.cfg.to_dict()}
        if language_model(loaded):
            details["language_model"] = {
                "context_length": int(loaded.model.context_length),
                "lm_kind": getattr(loaded.model, "lm_kind", "window"),
                "unknown_chars": loaded.cfg.data.unknown_chars, "chars": "".join(loaded.tokenizer.chars),
                "max_prompt_chars": max_prompt_chars, "max_new_tokens": max_new_tokens}
        if image_run(loaded):
            shape, mean, std, classes = input_spec(loaded.cfg)
            details["image_model"] = {"input_shape": list(shape), "mean": list(mean), "std": list(std),
                                      "classes": list(classes)}
        return details

    @app.post("/api/runs/{run:path}/generate", summary="stream generated text as server-sent events",
              response_class=StreamingResponse)
    async def generate(run: str, body: GenerateRequest):
        """Events: `start` {id, note}, `text` {text} (one or more chars each), `done` {chars, stopped, seconds},
        or `error` {error}. Stop it with POST /api/generations/{id}/stop or by closing the connection."""
        run_dir = resolve_run(root, run)
        loaded = await run_in_threadpool(cache.get, run_dir)
        if not language_model(loaded):
            raise ApiError(400, f"{run} is not a character language model run (no tokenizer.json or context_length)")
        prompt, note = checked_prompt(loaded, body)
        await run_in_threadpool(generations.take_slot)
        try:
            stream = stream_text(loaded.model, loaded.tokenizer, prompt, body.max_new_tokens, body.temperature,
                                 body.top_k, body.top_p, body.seed, loaded.cfg.data.unknown_chars)
            channel = CharChannel(asyncio.get_running_loop())
            generation = generations.start(run, stream, body.max_new_tokens, channel.put)
        except BaseException:
            generations.give_slot()
            raise
        return StreamingResponse(events(generation, channel, note), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def checked_prompt(loaded: LoadedRun, body: GenerateRequest) -> tuple[str, str | None]:
        """The prompt the model continues and a note for the user: `allmlp chat`'s checks, the run's unknown-char
        policy (error: refused; drop: removed, and said so), and the server's caps."""
        if len(body.prompt) > max_prompt_chars:
            raise ApiError(400, f"prompt is {len(body.prompt):,} characters; the limit is {max_prompt_chars:,}")
        if body.max_new_tokens > max_new_tokens:
            raise ApiError(400, f"max_new_tokens must be <= {max_new_tokens}, got {body.max_new_tokens}")
        if body.seed is not None and not 0 <= body.seed <= MAX_SEED:
            raise ApiError(400, f"seed must be in 0..{MAX_SEED}, got {body.seed}")
        check_prompt_text(body.prompt, "prompt")
        check_sampling(body.max_new_tokens, body.temperature, body.top_k, body.top_p)
        unknown = loaded.tokenizer.unknown_chars(body.prompt)
        if not unknown:
            return body.prompt, None
        shown = ", ".join(repr(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        if loaded.cfg.data.unknown_chars == "error":
            raise ApiError(400, f"the prompt holds characters this model never saw: {shown} (this run's "
                                "data.unknown_chars is error, so such prompts are refused)")
        dropped = set(unknown)
        kept = "".join(c for c in body.prompt if c not in dropped)
        return kept, f"dropped {len(body.prompt) - len(kept)} characters this model never saw: {shown} " \
                     "(this run's data.unknown_chars is drop)"

    async def events(generation, channel: CharChannel, note: str | None):
        try:
            yield sse("start", {"id": generation.id, "note": note})
            done = False
            while not done:
                chars = await channel.take()  # whatever arrived since the last event goes out in one
                done = bool(chars) and chars[-1] is None
                text = "".join(c for c in chars if c is not None)
                if text:
                    yield sse("text", {"text": text})
                if not done:  # chars of the next 20 ms go out together: fewer wake-ups of this thread, which
                    await asyncio.sleep(STREAM_INTERVAL_S)  # would take the GIL from the generating one
            if generation.error:
                yield sse("error", {"error": generation.error})
            else:
                yield sse("done", generation.public())
        finally:  # the client went away (or the stream ended): the worker stops at its next char
            generation.cancel.set()

    @app.post("/api/runs/{run:path}/classify", summary="top-5 classes of an uploaded PNG/JPEG image")
    def classify(run: str, image: UploadFile = File(..., description="a PNG or JPEG file, at most 10 MB")):
        run_dir, loaded = loaded_run(run)
        if not image_run(loaded):
            raise ApiError(400, f"{run} is not an image classification run")
        picture = decode_image(image.file.read(MAX_UPLOAD_BYTES + 1))
        x, pixels = model_input(picture, loaded.cfg)  # (1, C, H, W), (C, H, W)
        with torch.no_grad():
            logits = loaded.model(x)[0]  # (classes,)
        _, _, _, classes = input_spec(loaded.cfg)
        probabilities = logits.float().softmax(-1)
        return {"top": top_classes(logits, classes, 5),
                "probabilities": {classes[i] if i < len(classes) else str(i): float(p)
                                  for i, p in enumerate(probabilities.tolist())},
                "uploaded": {"width": picture.width, "height": picture.height, "mode": picture.mode},
                "model_input": {"shape": list(x.shape[1:]), "min": float(x.min()), "max": float(x.max()),
                                "mean": float(x.mean()),
                                "png": "data:image/png;base64," + base64.b64encode(png_bytes(pixels)).decode()}}

    return app


def run_url(run: str) -> str:
    """A run name as it goes into a URL path (each part percent-encoded, slashes kept)."""
    from urllib.parse import quote

    return quote(run, safe="/")


def language_model(loaded: LoadedRun) -> bool:
    """Whether the run holds a character language model with its tokenizer."""
    return loaded.tokenizer is not None and hasattr(loaded.model, "context_length")


def image_run(loaded: LoadedRun) -> bool:
    """Whether the run holds an image classifier of a registered image data set."""
    from ..data.images import DATASETS
    from ..models import model_info

    return "." not in loaded.cfg.model.name and model_info(loaded.cfg.model.name)["task"] == "image" and \
        loaded.cfg.data.name in DATASETS

