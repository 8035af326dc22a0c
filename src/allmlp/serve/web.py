"""Web plumbing of `allmlp serve`: refused requests as one-line JSON errors, body size limits, server-sent events,
and an in-memory cache of pages rendered on demand."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from fastapi.responses import JSONResponse

from ..checkpoint import METRICS, WEIGHTS
from .images import MAX_UPLOAD_BYTES

MAX_JSON_BYTES = 64 * 1024


class ApiError(Exception):
    """A request the server refuses: answered as {"error": message} with `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


class BodyLimit:
    """ASGI middleware: request bodies over the limit (10 MB uploads to /classify, 64 KB elsewhere) get 413 before
    they are read whole, by their Content-Length or, for chunked bodies, by counting bytes as they arrive."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        limit = MAX_UPLOAD_BYTES + MAX_JSON_BYTES if scope["path"].endswith("/classify") else MAX_JSON_BYTES
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            response = JSONResponse({"error": f"request body over {limit:,} bytes"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, f"request body over {limit:,} bytes")
            return message

        return await self.app(scope, counted_receive, send)


class Rendered:
    """Pages and figures made on demand (report, figures, test images), kept in memory per run until its files
    change; one render at a time, so two visitors never render the same page twice at once."""

    def __init__(self):
        self._items: dict[tuple[str, Path], tuple[tuple, object]] = {}
        self._lock = threading.RLock()  # a render may ask for another (figures look up the test images)

    def get(self, kind: str, run_dir: Path, make):
        """What `make()` returns for (kind, run), made again only when the run's weights or metrics changed."""
        signature = tuple((run_dir / f).stat().st_mtime if (run_dir / f).is_file() else 0 for f in (WEIGHTS, METRICS))
        with self._lock:
            item = self._items.get((kind, run_dir))
            if item is None or item[0] != signature:
                item = (signature, make())
                self._items[(kind, run_dir)] = item
            return item[1]


def one_line(error: dict) -> str:
    """A pydantic validation error as `where: what`."""
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    return f"{where}: {error.get('msg', 'invalid')}"
