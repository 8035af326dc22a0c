"""`allmlp serve [RUNS_DIR] [--host 127.0.0.1] [--port 8000]`: the web app over a folder of runs."""

from __future__ import annotations

import socket

from .common import parser as common_parser


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: a free one), or a one-line error when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port") from None
    sock.listen(128)
    return sock


def main(argv: list[str]) -> int:
    """Start the server and print its address; Ctrl-C stops it."""
    parser = common_parser("serve", "A local web app over the run folders under RUNS_DIR: a runs page (live status "
                                    "of trainings), chat with language models (streamed), classify images with image "
                                    "models, each run's report and figures, and a JSON API (its OpenAPI page at "
                                    "/docs).")
    parser.add_argument("runs_dir", nargs="?", default="runs", help="folder of run folders, searched recursively "
                                                                     "(default: runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                            "only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-generations", type=int, default=4, metavar="N",
                        help="generations running at once; more wait briefly, then get 503 (default 4)")
    parser.add_argument("--cache-size", type=int, default=4, metavar="N", help="models kept loaded (default 4)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")

    import uvicorn

    from ..serve import create_app

    app = create_app(args.runs_dir, max_generations=args.max_generations, cache_size=args.cache_size)
    sock = bound_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"allmlp serve: {app.state.root} at http://{shown}:{port}/ (API: http://{shown}:{port}/docs; Ctrl-C stops)",
          flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    server.run(sockets=[sock])
    return 0
