"""Sampling from any character language model through its protocol alone (what `allmlp generate` and `allmlp chat`
stream)."""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

DEFAULT_MAX_NEW_TOKENS = 200


def pad_id(tokenizer) -> int:
    """The id that fills a short context: the boundary (line data), else a newline or space, else id 0."""
    if tokenizer.boundary_id is not None:
        return tokenizer.boundary_id
    for char in ("\n", " "):
        if char in tokenizer.stoi:
            return tokenizer.stoi[char]
    return 0


def start_ids(tokenizer, prompt_ids: list[int]) -> list[int]:
    """The history generation starts from: line data always begins with the boundary; an empty prompt is a newline."""
    if tokenizer.boundary_id is not None and (not prompt_ids or prompt_ids[0] != tokenizer.boundary_id):
        return [tokenizer.boundary_id] + prompt_ids
    return prompt_ids or [pad_id(tokenizer)]


def model_input(model: nn.Module, tokenizer, history: list[int]) -> torch.Tensor:
    """The (1, T) ids the model sees: the last chars of `history` (of the current line), padded as in training."""
    T, kind = int(model.context_length), getattr(model, "lm_kind", "window")
    boundary = tokenizer.boundary_id
    if boundary is not None and boundary in history:
        last = len(history) - 1 - history[::-1].index(boundary)
        history = history[last:]  # training never shows a model two lines in one context
    pad = pad_id(tokenizer)
    if kind == "causal":
        ids = history[-int(getattr(model, "receptive_field", T)):]  # weights by lag: every char that still counts
    elif kind == "centered":
        # The char to guess sits in the middle: the left half is the history, the right half padding.
        middle = T // 2
        left = history[-middle:] if middle else []
        ids = [pad] * (middle - len(left)) + left + [pad] * (T - middle)
    else:
        ids = history[-T:]
        ids = [pad] * (T - len(ids)) + ids
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)


def next_char_logits(model: nn.Module, tokenizer, history: list[int]) -> torch.Tensor:
    """Logits (V,) of the char that follows `history`, for window, centered or causal models."""
    logits = model(model_input(model, tokenizer, history))
    return (logits[0, -1] if logits.ndim == 3 else logits[0]).float()


class FullRecompute:
    """Next-char logits by running the model on its whole input window for every char."""

    def __init__(self, model: nn.Module, tokenizer):
        self.model, self.tokenizer, self.history = model, tokenizer, []

    def extend(self, ids: list[int]) -> None:
        """Append chars to the text so far."""
        self.history.extend(ids)

    def logits(self) -> torch.Tensor:
        """Logits (V,) of the char after the text so far."""
        return next_char_logits(self.model, self.tokenizer, self.history)


class IncrementalLogits:
    """Next-char logits through the model's `init_state` / `step` hooks: each char costs one step, not a window.

    Gives what FullRecompute gives: the state restarts at a line boundary, as `model_input` cuts the text there.
    """

    def __init__(self, model: nn.Module, tokenizer):
        self.model, self.boundary = model, tokenizer.boundary_id
        self.device = next(model.parameters()).device
        self.state, self.pending, self.last = model.init_state(1), [], None

    def extend(self, ids: list[int]) -> None:
        """Append chars to the text so far (stepped through when the next logits are asked for)."""
        self.pending.extend(ids)

    def logits(self) -> torch.Tensor:
        """Logits (V,) of the char after the text so far."""
        for char_id in self.pending:
            if char_id == self.boundary:
                self.state = self.model.init_state(1)
            step_ids = torch.tensor([char_id], dtype=torch.long, device=self.device)
            self.last, self.state = self.model.step(step_ids, self.state)
        self.pending = []
        return self.last[0].float()


def logits_source(model: nn.Module, tokenizer, full_recompute: bool = False) -> FullRecompute | IncrementalLogits:
    """The incremental path when the model has the `init_state` / `step` hooks (unless `full_recompute`)."""
    incremental = hasattr(model, "init_state") and hasattr(model, "step") and not full_recompute
    return IncrementalLogits(model, tokenizer) if incremental else FullRecompute(model, tokenizer)


def sample_id(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
              generator: torch.Generator | None = None) -> int:
    """One id from logits (V,): greedy at temperature 0, else softmax(logits / T) restricted to top-k / top-p."""
    if temperature <= 0:
        return int(logits.argmax())
    # below 1e-6 logits / T could overflow to inf, and T itself round to 0 in float32 (then NaN): shifted first,
    # so the likeliest stays at 0, and T kept at 1e-30 or more (below that it is greedy in float32 anyway)
    logits = (logits - logits.max()) / max(temperature, 1e-30) if temperature < 1e-6 else logits / temperature
    if top_k is not None and 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) >= top_p  # keep the smallest set reaching top_p
        drop[0] = False  # and always the likeliest id, also where top_p rounds to 0 in float32
        logits = logits.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1).cpu()
    return int(torch.multinomial(probs, 1, generator=generator))


def seeded_generator(seed: int | None) -> torch.Generator:
    """A CPU generator: reproducible with a seed, freshly seeded without one."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def check_sampling(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None) -> None:
    """One-line errors for sampling settings out of range."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


@torch.no_grad()
def stream_text(model: nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                seed: int | None = None, unknown: str = "error",
                generator: torch.Generator | None = None, full_recompute: bool = False) -> Iterator[str]:
    """Yield the chars generated after `prompt`, one at a time (unknown prompt chars: "error" or "drop").

    Models with `init_state` / `step` hooks generate incrementally (the same logits, far less work per char);
    `full_recompute=True` runs the whole window for every char instead (tests, benchmarks). With the byte
    tokenizer a char is yielded once its bytes are complete; an invalid sequence yields U+FFFD.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    history = start_ids(tokenizer, tokenizer.encode(prompt, unknown=unknown))
    if generator is None:
        generator = seeded_generator(seed)
    was_training = model.training
    model.eval()
    decoder = tokenizer.stream_decoder()  # bytes: a multi-byte char is yielded once complete
    try:
        source = logits_source(model, tokenizer, full_recompute)
        source.extend(history)
        for _ in range(max_new_tokens):
            next_id = sample_id(source.logits(), temperature, top_k, top_p, generator)
            source.extend([next_id])
            text = decoder.step(next_id)
            if text:
                yield text
        if tail := decoder.flush():
            yield tail
    finally:
        model.train(was_training)


def generate_text(model: nn.Module, tokenizer, prompt: str = "", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  seed: int | None = None, unknown: str = "error", full_recompute: bool = False) -> str:
    """The text generated after `prompt` (without the prompt); `full_recompute` as in stream_text."""
    return "".join(stream_text(model, tokenizer, prompt, max_new_tokens, temperature, top_k, top_p, seed, unknown,
                               full_recompute=full_recompute))


def check_prompt_text(prompt: str, source: str) -> None:
    """A one-line error when `prompt` holds bytes that are not UTF-8 (the shell passes them through as is)."""
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as err:
        code = ord(prompt[err.start])
        byte = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"code point U+{code:04X}"
        raise ValueError(f"{source} is not UTF-8 text ({byte} at character {err.start + 1}); "
                         "give the text in UTF-8") from None


def load_for_sampling(run: str):
    """(model, cfg, tokenizer) of a text run folder, or a one-line error when it is not a language model."""
    from .checkpoint import load_run
    from .models.protocol import is_language_model

    model, cfg, tokenizer = load_run(run)
    if tokenizer is None or not is_language_model(model):
        raise ValueError(f"{run} is not a character language model run (no tokenizer.json or context_length)")
    return model, cfg, tokenizer  # load_run checked the tokenizer against the model's vocabulary
