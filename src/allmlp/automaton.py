"""The language cellular automaton: a centered model rewrites every character of a text from its neighbours.

Like a stencil in a PDE solver, one update reads, for each position p, the T//2 characters before p and the
T - T//2 after it (padding past either end) and replaces every character at once by the model's choice;
`times` updates are applied one after the other. With `grow` > 0 each update first adds `grow` blank chars at
both ends, so the text spreads outwards pass by pass, as the language-interpolation project's automaton does (it pads
its text with spaces before every pass): that is how a centered model continues a prompt.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn

from .generate import pad_id

# A centered model guesses a char from both sides, so it has no "next" char to stream: it continues a prompt the
# language-interpolation project's way, rewriting the whole text DEFAULT_REAPPLY times (its data.reapply) while it
# grows at both ends.
DEFAULT_REAPPLY = 10
AUTOMATON_GROW = 2


def neighbourhoods(ids: torch.Tensor, context_length: int, pad: int) -> torch.Tensor:
    """(L,) ids -> (L, T): the T//2 ids before and the T - T//2 after every position (the position itself left out)."""
    before, after = context_length // 2, context_length - context_length // 2
    padded = torch.cat([ids.new_full((before,), pad), ids, ids.new_full((after,), pad)])  # (L + T,)
    windows = padded.unfold(0, context_length + 1, 1)  # (L, T + 1), the middle column is the position itself
    return torch.cat([windows[:, :before], windows[:, before + 1:]], dim=1)


def blank_id(tokenizer) -> int:
    """The id new room is filled with: a space as the language-interpolation project uses, else the generation pad."""
    return tokenizer.stoi.get(" ", pad_id(tokenizer))


@torch.no_grad()
def reapply_passes(model: nn.Module, tokenizer, text: str, times: int, top_k: int = 1, seed: int | None = None,
                   grow: int = 0) -> Iterator[str]:
    """Yield the text after each of `times` passes of a centered model over every position of `text` at once.

    top_k=1 takes the likeliest character (its topk=1); a larger top_k samples among the k likeliest.
    Each pass first adds `grow` blank chars at both ends (0: the text keeps its length).
    """
    if getattr(model, "lm_kind", None) != "centered":
        raise ValueError(f"reapply needs a centered model (lm_kind 'centered'), got {getattr(model, 'lm_kind', None)!r}")
    if times < 0 or top_k < 1 or grow < 0:
        raise ValueError(f"reapply: times and grow must be >= 0 and top_k >= 1, got times={times}, top_k={top_k}, "
                         f"grow={grow}")
    device = next(model.parameters()).device
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)  # (L,)
    margin = ids.new_full((grow,), blank_id(tokenizer))
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    for _ in range(times):
        ids = torch.cat([margin, ids, margin])  # (L + 2 * grow,)
        if len(ids) == 0:
            yield ""
            continue
        logits = model(neighbourhoods(ids, int(model.context_length), pad_id(tokenizer)).to(device)).float().cpu()
        if top_k == 1:
            ids = logits.argmax(-1)  # (L,)
        else:
            values, choices = logits.topk(min(top_k, logits.shape[-1]), dim=-1)  # (L, k)
            picked = torch.multinomial(values.softmax(-1), 1, generator=generator).squeeze(1)
            ids = choices.gather(1, picked.unsqueeze(1)).squeeze(1)
        yield tokenizer.decode(ids.tolist())


def reapply(model: nn.Module, tokenizer, text: str, times: int, top_k: int = 1, seed: int | None = None,
            grow: int = 0) -> str:
    """The text after `times` passes of a centered model (see `reapply_passes`); `text` itself when times=0."""
    for text in reapply_passes(model, tokenizer, text, times, top_k, seed, grow):
        pass
    return text
