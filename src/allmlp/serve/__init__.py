"""`allmlp serve`: a local web app (FastAPI + uvicorn) to chat with, classify with and browse the runs of a folder."""

from .app import create_app

__all__ = ["create_app"]
