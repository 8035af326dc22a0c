"""Corpora tokenized once into token files in the cache (`allmlp data prepare`), read window by window in training.

A prepared corpus is a folder `<cache>/prepared/<source>-<key>/` holding `train.bin`, `val.bin`, `test.bin` (the
token ids as uint8 when the vocabulary has at most 256 ids, else uint16) and `meta.json` (the tokenizer, the split
rule, token counts and SHA-256 checksums). The key hashes what decides the tokens: the source, `data.tokenizer`,
the split fractions or line counts and `data.max_chars`, so a run with `data.prepared=true` and the same data
settings finds the folder its in-memory twin would have built, and sees exactly the same batches.

Running text is tokenized in chunks (constant memory, any size); line data sets are shuffled by line, so they are
split in memory once, as in training. Training reads only the windows of each batch, one `pread` per window (no
memory map, whose touched pages would count as resident memory), so resident memory does not depend on the
corpus size; each DDP rank reads only its share.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..files import atomic_write_bytes
from .cache import cache_dir
from .text import (CORPORA, FOLDER_SEPARATOR, CharTokenizer, corpus_files, fetch_corpus, load_text_splits,
                   new_tokenizer, split_fractions, tokenizer_from_dict)

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META = "meta.json"
CHUNK_BYTES = 1 << 24  # text read and tokenized 16 MB at a time
MAX_CODEPOINT = 0x10FFFF


class TokenFile:
    """One split's tokens on disk, indexed like a 1-D LongTensor: `len()` and `tokens[index_tensor]` (a gather).

    `front` / `back` pad the stream with `pad_id` without touching the file (line data's boundary padding)."""

    def __init__(self, path: Path, dtype: str, length: int, front: int = 0, back: int = 0, pad_id: int = 0):
        self.path, self.dtype, self.length = Path(path), np.dtype(dtype), length
        self.front, self.back, self.pad_id = front, back, pad_id

    def __len__(self) -> int:
        return self.front + self.length + self.back

    def padded(self, front: int, back: int, pad_id: int) -> "TokenFile":
        """This stream with `front` pad ids before it and `back` after it."""
        return TokenFile(self.path, self.dtype.str, self.length, front, back, pad_id)

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        """The tokens at `index` (positions in [0, len), any shape), as int64; each row along the last dimension
        is read as one span from its lowest to its highest position (a window: contiguous)."""
        position = index - self.front
        inside = (position >= 0) & (position < self.length)
        rows = position.clamp(0, self.length - 1).reshape(-1, position.shape[-1] if position.ndim else 1)
        out = torch.empty(rows.shape, dtype=torch.long)
        lows, highs = rows.min(1).values.tolist(), rows.max(1).values.tolist()
        size = self.dtype.itemsize
        # pread, not a memory map: mapped pages of a large page cache come in folios of up to 2 MB per touched
        # window, which would make resident memory grow with batch size x folio size instead of the batch.
        with open(self.path, "rb", buffering=0) as handle:
            for row, (low, high) in enumerate(zip(lows, highs)):
                span = os.pread(handle.fileno(), (high - low + 1) * size, low * size)
                values = torch.from_numpy(np.frombuffer(span, dtype=self.dtype).astype(np.int64))  # (high - low + 1,)
                out[row] = values[rows[row] - low]
        return out.reshape(position.shape).masked_fill(~inside, self.pad_id)

    def positions_of(self, token_id: int, end: int) -> torch.Tensor:
        """Positions p < `end` whose token is `token_id`, scanned in chunks: (N,) int64."""
        found, step = [], CHUNK_BYTES
        for start in range(0, end, step):
            chunk = self[torch.arange(start, min(start + step, end))]
            found.append((chunk == token_id).nonzero().squeeze(1) + start)
        return torch.cat(found) if found else torch.zeros(0, dtype=torch.long)


def source_of(data_cfg) -> tuple[str, bool]:
    """(what the corpus is read from: a corpus name or an absolute path, whether it is line data)."""
    corpus = CORPORA.get(data_cfg.name)
    if data_cfg.path:
        return str(Path(data_cfg.path).resolve()), data_cfg.name == "lines" or bool(corpus and corpus.lines)
    if corpus is None:
        raise ValueError(f"data.name={data_cfg.name!r} is not a text corpus; choose one of {', '.join(CORPORA)}, "
                         "or data.name=text / data.name=lines with data.path=FILE or FOLDER")
    return data_cfg.name, corpus.lines


def split_rule(data_cfg, lines: bool) -> dict:
    """What decides how the text is split (and so the tokens of each split)."""
    train, val = split_fractions(data_cfg)
    rule = {"train_fraction": train, "val_fraction": val, "max_chars": data_cfg.max_chars}
    if lines:
        rule.update(kind="shuffled lines", val_lines=data_cfg.val_lines, test_lines=data_cfg.test_lines)
    else:
        rule["kind"] = "contiguous chars"
    return rule


def prepared_dir(data_cfg) -> Path:
    """The cache folder of the prepared corpus for these data settings."""
    source, lines = source_of(data_cfg)
    key = json.dumps({"source": source, "lines": lines, "tokenizer": data_cfg.tokenizer,
                      "split": split_rule(data_cfg, lines)}, sort_keys=True)
    stem = Path(source).stem if data_cfg.path else source
    return cache_dir() / "prepared" / f"{stem}-{data_cfg.tokenizer}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _source_chunks(data_cfg) -> Iterator[str]:
    """The corpus text in chunks of about CHUNK_BYTES, as `corpus_text` would read it (folders joined likewise)."""
    source, _ = source_of(data_cfg)
    path = Path(data_cfg.path) if data_cfg.path else fetch_corpus(source)
    files = corpus_files(path) if path.is_dir() else [path]
    remaining = data_cfg.max_chars if data_cfg.max_chars > 0 else -1
    for number, file in enumerate(files):
        if not file.is_file():
            raise FileNotFoundError(f"text file not found: {file}")
        decoder, offset, has_text = codecs.getincrementaldecoder("utf-8")(), 0, False
        pieces = [FOLDER_SEPARATOR] if number else []
        with open(file, "rb") as handle:
            while True:
                raw = handle.read(CHUNK_BYTES)
                try:
                    pieces.append(decoder.decode(raw, final=not raw))
                except UnicodeDecodeError as err:
                    raise ValueError(f"{file} is not UTF-8 text (byte {offset + err.start}: {err.reason})") from None
                offset += len(raw)
                for text in pieces:
                    has_text = has_text or bool(text.strip())
                    if remaining >= 0:
                        text, remaining = text[:remaining], remaining - min(remaining, len(text))
                    if text:
                        yield text
                pieces = []
                if not raw or remaining == 0:
                    break
        if not has_text:
            raise ValueError(f"{file} is empty: a text corpus needs at least a few characters")
        if remaining == 0:
            return


class _SplitWriter:
    """Appends token ids to one split's file, counting them and hashing the bytes written."""

    def __init__(self, path: Path, dtype: np.dtype):
        self.handle, self.dtype = open(path, "wb"), dtype
        self.digest, self.tokens = hashlib.sha256(), 0

    def write(self, ids: np.ndarray) -> None:
        data = ids.astype(self.dtype).tobytes()
        self.handle.write(data)
        self.digest.update(data)
        self.tokens += len(ids)

    def close(self) -> dict:
        self.handle.close()
        return {"tokens": self.tokens, "bytes": self.tokens * self.dtype.itemsize, "sha256": self.digest.hexdigest()}


def _token_dtype(vocab_size: int) -> np.dtype:
    if vocab_size > 65536:
        raise ValueError(f"a vocabulary of {vocab_size} ids does not fit the uint16 token files")
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16)


def _codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _fast_encoder(tokenizer):
    """`tokenizer.encode_array(text, "drop")` by table lookup (the char tokenizer's search is ~30x slower)."""
    if not isinstance(tokenizer, CharTokenizer):
        return lambda text: tokenizer.encode_array(text, "drop", warn=False)
    table = np.full(MAX_CODEPOINT + 1, -1, dtype=np.int64)
    table[[ord(c) for c in tokenizer.chars]] = np.arange(tokenizer.vocab_size)

    def encode(text: str) -> np.ndarray:
        ids = table[_codepoints(text)]
        return ids[ids >= 0]  # chars only val / test hold are dropped, as in memory

    return encode


def _write_running_text(data_cfg, folder: Path):
    """Tokenize running text chunk by chunk into the three split files: (tokenizer, per-split file records)."""
    total = sum(len(text) for text in _source_chunks(data_cfg))
    train, val = split_fractions(data_cfg)
    ends = {"train": int(total * train), "val": int(total * (train + val)), "test": total}  # split_text's rule
    if data_cfg.tokenizer == "char":  # the vocabulary is the training split's chars
        present, seen = np.zeros(MAX_CODEPOINT + 1, dtype=bool), 0
        for text in _source_chunks(data_cfg):
            present |= np.bincount(_codepoints(text[:max(0, ends["train"] - seen)]), minlength=len(present)) > 0
            seen += len(text)
            if seen >= ends["train"]:
                break
        tokenizer = new_tokenizer("char", "".join(map(chr, np.flatnonzero(present))))
    else:
        tokenizer = new_tokenizer(data_cfg.tokenizer, "")
    encode = _fast_encoder(tokenizer)
    dtype = _token_dtype(tokenizer.vocab_size)
    writers = {split: _SplitWriter(folder / f"{split}.bin", dtype) for split in SPLITS}
    bounds = {"train": (0, ends["train"]), "val": (ends["train"], ends["val"]), "test": (ends["val"], total)}
    start = 0  # chars before this chunk
    for text in _source_chunks(data_cfg):
        for split, (lo, hi) in bounds.items():
            piece = text[max(lo - start, 0):max(hi - start, 0)]
            if piece:
                writers[split].write(encode(piece))
        start += len(text)
    return tokenizer, {split: writer.close() for split, writer in writers.items()}


def _write_lines(data_cfg, folder: Path):
    """Line data: split (shuffled by line) and tokenized in memory, exactly as training does, then written."""
    tokenizer, streams = load_text_splits(data_cfg)
    dtype = _token_dtype(tokenizer.vocab_size)
    records = {}
    for split in SPLITS:
        writer = _SplitWriter(folder / f"{split}.bin", dtype)
        writer.write(streams[split].numpy())
        records[split] = writer.close()
    return tokenizer, records


def prepare(data_cfg) -> Path:
    """Tokenize the corpus of `data_cfg` into its prepared folder (replacing an older one whole); returns it."""
    source, lines = source_of(data_cfg)
    new_tokenizer(data_cfg.tokenizer, "")  # an unknown tokenizer fails before any reading
    target = prepared_dir(data_cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        tokenizer, records = (_write_lines if lines else _write_running_text)(data_cfg, folder)
        if records["train"]["tokens"] < 2:
            raise ValueError(f"the training split of {data_cfg.path or source} is too short "
                             f"({records['train']['tokens']} tokens)")
        meta = {"format": FORMAT_VERSION, "source": source, "lines": lines, "tokenizer": tokenizer.to_dict(),
                "split": split_rule(data_cfg, lines), "dtype": _token_dtype(tokenizer.vocab_size).name,
                "folder_separator": FOLDER_SEPARATOR, "files": records}
        atomic_write_bytes(folder / META, json.dumps(meta, indent=2, ensure_ascii=False).encode())
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            os.replace(target, old)
        os.replace(folder, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return target


def verify_file(path: Path, record: dict) -> None:
    """One-line errors for a split file that is missing, of the wrong size or with the wrong checksum."""
    again = "prepare it again with `allmlp data prepare`"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {again}")
    if path.stat().st_size != record["bytes"]:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, expected {record['bytes']}; {again}")
    digest, buffer = hashlib.sha256(), bytearray(1 << 20)  # one reused buffer: no large blocks left in the heap
    with open(path, "rb") as handle:
        while size := handle.readinto(buffer):
            digest.update(memoryview(buffer)[:size])
    if digest.hexdigest() != record["sha256"]:
        raise ValueError(f"{path}: checksum mismatch (the file changed since it was prepared); {again}")


def load_prepared(data_cfg, tokenizer=None):
    """(tokenizer, {"train", "val", "test": TokenFile}) of the prepared corpus for `data_cfg`, verified.

    `tokenizer` (a run's own) must be the one the corpus was prepared with."""
    folder = prepared_dir(data_cfg)
    meta_path = folder / META
    source, _ = source_of(data_cfg)
    if not meta_path.is_file():
        shown = data_cfg.path or source
        raise FileNotFoundError(f"data.prepared=true, but {shown} is not prepared for these data settings "
                                f"(tokenizer {data_cfg.tokenizer}); run `allmlp data prepare {shown} "
                                f"--tokenizer {data_cfg.tokenizer}` first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        prepared_tokenizer = tokenizer_from_dict(meta["tokenizer"])
        records, dtype = meta["files"], meta["dtype"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{meta_path}: corrupt prepared-corpus record ({err.__class__.__name__})") from None
    if meta.get("format") != FORMAT_VERSION or meta.get("source") != source:
        raise ValueError(f"{meta_path}: prepared by another version or from another source; prepare it again")
    if tokenizer is not None and tokenizer.to_dict() != prepared_tokenizer.to_dict():
        raise ValueError(f"{folder}: prepared with another tokenizer ({prepared_tokenizer!r}) than the run's "
                         f"({tokenizer!r}); prepare it again from the run's own data")
    streams = {}
    for split in SPLITS:
        path = folder / f"{split}.bin"
        verify_file(path, records[split])
        streams[split] = TokenFile(path, dtype, records[split]["tokens"])
    return prepared_tokenizer, streams


def load_token_splits(data_cfg, tokenizer=None):
    """(tokenizer, streams) of a data config: prepared token files with `data.prepared`, else the text in memory."""
    if data_cfg.prepared:
        return load_prepared(data_cfg, tokenizer)
    return load_text_splits(data_cfg, tokenizer)
