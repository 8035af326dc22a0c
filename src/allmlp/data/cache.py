"""The cache folder and a verified, atomic downloader."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from ..files import temporary_path


def cache_dir() -> Path:
    """Where data sets are cached: $ALLMLP_CACHE, else $XDG_CACHE_HOME/allmlp, else ~/.cache/allmlp."""
    root = os.environ.get("ALLMLP_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "allmlp"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def download(urls: list[str], target: Path, timeout: float = 30.0) -> Path:
    """Download the first URL that answers into `target` (written to a temporary name, then renamed)."""
    errors = []
    tmp = temporary_path(target, ".part")
    try:
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out)
                os.replace(tmp, target)
                return target
            except OSError as err:
                errors.append(f"{url}: {err}")
    finally:
        tmp.unlink(missing_ok=True)
    raise OSError(f"could not download {target.name}: " + "; ".join(errors))
