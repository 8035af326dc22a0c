"""The UTF-8 byte tokenizer (vocabulary 256: any text, no unknown characters) and streaming decoders."""

from __future__ import annotations

import codecs

import numpy as np
import torch

BYTE_VOCAB = 256


class ByteDecoder:
    """Ids -> text one id at a time: an incomplete UTF-8 sequence is held back, an invalid one becomes U+FFFD."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def step(self, token_id: int) -> str:
        """The text completed by this byte ("" while a multi-byte char is still incomplete)."""
        return self._decoder.decode(bytes([token_id]))

    def flush(self) -> str:
        """What is still held back at the end (an unfinished sequence becomes U+FFFD)."""
        return self._decoder.decode(b"", final=True)


class ByteTokenizer:
    """Text <-> its UTF-8 bytes (ids 0..255); line data sets use the newline byte as their boundary."""

    def __init__(self, boundary: str | None = None):
        if boundary is not None and len(boundary.encode("utf-8")) != 1:
            raise ValueError(f"a byte tokenizer's boundary must be one byte, got {boundary!r}")
        self.boundary = boundary
        # Labels for figures and the prompt checks: ASCII bytes are their char, the others are shown as \xNN.
        self.chars = [chr(i) if i < 128 else f"\\x{i:02x}" for i in range(BYTE_VOCAB)]
        self.stoi = {chr(i): i for i in range(128)}

    @property
    def vocab_size(self) -> int:
        """Always 256."""
        return BYTE_VOCAB

    @property
    def boundary_id(self) -> int | None:
        """Byte value of the start/end token of line data sets, else None."""
        return None if self.boundary is None else self.boundary.encode("utf-8")[0]

    def unknown_chars(self, text: str) -> list[str]:
        """Always empty: every text has a UTF-8 encoding."""
        return []

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """The UTF-8 bytes of `text` (`unknown` is accepted for the char tokenizer's signature; nothing is unknown)."""
        return list(text.encode("utf-8"))

    def encode_array(self, text: str, unknown: str = "error", warn: bool = True) -> np.ndarray:
        """Like `encode`, vectorised: an int64 array."""
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids) -> str:
        """Text of a sequence of byte ids; invalid or incomplete sequences become U+FFFD."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return bytes(ids).decode("utf-8", errors="replace")

    def stream_decoder(self) -> ByteDecoder:
        """A decoder for ids generated one at a time."""
        return ByteDecoder()

    def to_dict(self) -> dict:
        """JSON-ready form, saved as tokenizer.json in the run folder."""
        return {"type": "bytes", "boundary": self.boundary}

    @classmethod
    def from_dict(cls, data: dict) -> "ByteTokenizer":
        """The tokenizer saved by `to_dict`."""
        return cls(data.get("boundary"))

    def __repr__(self) -> str:
        return f"ByteTokenizer(boundary={self.boundary!r})"
