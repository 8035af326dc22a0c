"""The reference projects' spellings, rewritten into ours before a config is built or a command parses its words.

The language-interpolation project's Hydra keys (`net=small`, `net.hidden.width=64`, `optimizer.lr`,
`data.max_features`, `data.type=sequence`), its sampling words (`topk=2 num_predict=1000 prompts=[...]`) and the
command-line words that belong to another allmlp command here. This module imports nothing from allmlp, so the
config layer and every command can use it.
"""

from __future__ import annotations

import warnings
from typing import Any

# Option names of the language-interpolation project, mapped onto ours.
ALIASES = {
    "net": "model",
    "optimizer": "optim",
    "batch_size": "data.batch_size",
    "max_epochs": "train.max_epochs",
    "accumulate_grad_batches": "train.accumulate_grad_batches",
    "data.max_features": "data.context_length",  # high-order nets: context characters fed as features
    "net.features": "data.context_length",  # its centered (cellular automaton) model
    "initialize.type": "model.initialization",
    "net.model_type": "model.name",
}
# `net=small`, `optimizer=lion`: a bare section key picks the section's name.
NAME_ALIASES = {"net": "model.name", "model": "model.name", "optimizer": "optim.name", "optim": "optim.name"}
# Its `net=` networks, registered here as `ho_<name>`.
NETWORK_NAMES = ("small", "large_single_layer", "large_double_layer", "large_standard", "conv", "tail_focus",
                 "transformer", "high_order_input_transformer", "mamba", "centered")
NETWORK_PREFIX = "ho_"
# Its keys that change nothing here (what they switched on is always on), with why.
NO_EFFECT = {"data.add_channel_dimension": "each network takes its chars in the shape it needs (one channel for conv)"}
_noted: set[str] = set()


def network_name(name: str) -> str:
    """A network name of the language-interpolation project (`small`) -> its registry name (`ho_small`)."""
    return NETWORK_PREFIX + name if name in NETWORK_NAMES else name


def _key(key: str) -> str:
    """Our dotted key for one of its keys (`net.hidden.width` -> `model.hidden_width`); ours pass unchanged."""
    head, _, rest = key.partition(".")
    if key in ALIASES:
        key = ALIASES[key]
    elif head in ALIASES and rest:
        key = f"{ALIASES[head]}.{rest}"
    section, _, rest = key.partition(".")
    # Its nested `net.hidden.width` / `net.hidden.layers` are the model arguments hidden_width / hidden_layers.
    return f"{section}.{rest.replace('.', '_')}" if section == "model" else key


def is_section_alias(key: str) -> bool:
    """Whether a top-level key names a whole section (`net:`, `optimizer:`) in a preset."""
    return key in NAME_ALIASES


def canonical(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """(dotted key, value) pairs in our spelling: aliases, nested model keys, network names, `data.type=sequence`;
    keys with no effect here are dropped, with a note the first time one is given true."""
    out = []
    for key, value in items:
        if key in NAME_ALIASES and value is None:
            continue  # an empty `net:` section sets nothing
        if key in NAME_ALIASES and not isinstance(value, dict):
            key = NAME_ALIASES[key]
        else:
            key = _key(key)
        if key in NO_EFFECT:
            if value not in (False, "false", "False", 0, None) and key not in _noted:
                _noted.add(key)
                warnings.warn(f"{key}={value} changes nothing here: {NO_EFFECT[key]}", stacklevel=3)
            continue
        if key == "model.name" and isinstance(value, str):
            value = network_name(value)
        if key == "data.type" and value == "sequence":  # its name for next-char windows
            value = "window"
        out.append((key, value))
    return out


# Words of its command lines that belong to other allmlp commands here.
OTHER_COMMAND_WORDS = {
    "-m": "a hydra multirun is `allmlp sweep PRESET --trials N section.key=low:high` here",
    "--multirun": "a hydra multirun is `allmlp sweep PRESET --trials N section.key=low:high` here",
    "train": "generating from a checkpoint is `allmlp generate RUN --prompt TEXT` here",
    "checkpoint": "generating from a checkpoint is `allmlp generate RUN --prompt TEXT` here",
}


def reject_other_command_words(argv: list[str]) -> None:
    """A one-line error for its words (`-m`, `train=False checkpoint=...`) that another allmlp command handles."""
    for word in argv:
        key = word.split("=", 1)[0]
        if key in OTHER_COMMAND_WORDS and (key.startswith("-") or "=" in word):
            raise ValueError(f"{word!r} is not a training option: {OTHER_COMMAND_WORDS[key]}")


# Its sampling words (`topk=2 num_predict=1000 prompts=[...]`) -> our generate settings.
SAMPLING_WORDS = {"topk": "top_k", "top_k": "top_k", "topp": "top_p", "top_p": "top_p",
                  "num_predict": "max_new_tokens", "max_new_tokens": "max_new_tokens", "temperature": "temperature",
                  "seed": "seed", "prompts": "prompts", "prompt": "prompts",
                  "text": "prompts", "data.reapply": "reapply"}  # its gbm and cellular-automaton scripts
# What each setting's value must be: (type, words for the error message).
SETTING_TYPES = {"top_k": (int, "a whole number"), "top_p": (float, "a number"),
                 "max_new_tokens": (int, "a whole number"), "temperature": (float, "a number"),
                 "seed": (int, "a whole number"), "reapply": (int, "a whole number")}


def split_prompt_list(text: str) -> list[str]:
    """Prompts from a `[a, b]` / `["Who are you?"]` list (quotes optional), or `[text]` as one prompt."""
    inner = text.strip()[1:-1]
    prompts, current, quote = [], "", None
    for char in inner:
        if quote:
            if char == quote:
                quote = None
            else:
                current += char
        elif char in "\"'" and not current.strip():
            current, quote = "", char
        elif char == ",":
            prompts.append(current.strip())
            current = ""
        else:
            current += char
    if quote:
        raise ValueError(f"prompts={text}: a quote {quote} is never closed")
    if current.strip() or prompts:
        prompts.append(current.strip())
    return prompts


def join_split_lists(items: list[str]) -> list[str]:
    """Rejoin a `key=[a, b]` list that the shell cut into words (`key=[a,` `b]`) into one item."""
    joined: list[str] = []
    for item in items:
        open_list = joined and joined[-1].partition("=")[2].startswith("[") and not joined[-1].endswith("]")
        if open_list:
            joined[-1] += " " + item
        else:
            joined.append(item)
    return joined


def setting_value(key: str, name: str, text: str):
    """The typed value of a `key=text` setting, or a one-line error naming the key and the value."""
    cast, expected = SETTING_TYPES[name]
    try:
        return cast(text)
    except ValueError:
        raise ValueError(f"{key}={text}: expected {expected}") from None


def sampling_settings(items: list[str]) -> dict[str, Any]:
    """`key=value` sampling words as our settings ({"top_k": 2, "prompts": [...], ...}), one-line errors else."""
    settings: dict[str, Any] = {}
    for item in join_split_lists(items):
        key, sep, text = item.partition("=")
        if not sep or key not in SAMPLING_WORDS:
            raise ValueError(f"unexpected argument {item!r}: use --options or key=value with key one of "
                             f"{', '.join(sorted(SAMPLING_WORDS))}")
        name = SAMPLING_WORDS[key]
        if name == "prompts":
            is_list = text.strip().startswith("[") and text.strip().endswith("]")
            settings.setdefault("prompts", []).extend(split_prompt_list(text) if is_list else [text])
        else:
            settings[name] = setting_value(key, name, text)
    return settings
