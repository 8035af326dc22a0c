"""The layout holds: modules import only from their own layer or below (read from the source with ast), no import
cycle, every shipped preset builds its model, and every registered text model keeps the language-model protocol."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from allmlp.config import preset_names
from allmlp.configure import build_config
from allmlp.models import create_model, list_models, model_kwargs
from allmlp.models.protocol import hook, is_language_model

SOURCE = Path(__file__).parents[1] / "src" / "allmlp"
# Bottom to top (the README's Layout section): a module may import from its own layer and the layers below it.
LAYERS = [
    ("config", "compat", "files", "machine", "data"),
    ("models",),
    ("configure", "experiment", "optim", "precision", "ema", "engine", "rundir", "checkpoint", "tasks"),
    ("generate", "automaton", "viz", "report", "sweep", "export", "pretrained", "api", "embed", "serve"),
    ("cli", "__main__"),
]


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__.py)."""
    out = {}
    for path in SOURCE.rglob("*.py"):
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = module_names()


def imports_of(name: str) -> set[str]:
    """The allmlp modules `name` imports anywhere in its file (inside functions too), resolved to module names."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # `import allmlp.models.mixer` also names its packages
                target = target.rpartition(".")[0]
            if target.startswith("allmlp") and target != name:
                found.add(target)
    return found


def layer_of(name: str) -> int:
    """The layer index of a module; `allmlp` itself (its version, and `fit` imported when called) is under all."""
    if name == "allmlp":
        return -1
    top = name.split(".")[1]
    for index, members in enumerate(LAYERS):
        if top in members:
            return index
    raise AssertionError(f"{name} is in no layer of tests/test_architecture.py: add it to LAYERS")


def test_the_readme_layout_lists_every_layer_bottom_to_top():
    import re

    readme = (SOURCE.parents[1] / "README.md").read_text()
    section = readme.split("### Layout\n", 1)[1].split("\n#", 1)[0]
    named = [n.rstrip("/") for n in re.findall(r"`([\w/.]+)`", section) if "." not in n and n != "src/allmlp"]
    expected = [m for members in LAYERS for m in members if m != "__main__"]
    assert sorted(named) == sorted(expected), "README Layout and LAYERS disagree"
    assert [layer_of(f"allmlp.{n}") for n in named] == sorted(layer_of(f"allmlp.{n}") for n in named)


@pytest.mark.parametrize("name", sorted(set(MODULES) - {"allmlp"}))
def test_modules_import_only_from_their_layer_or_below(name):
    above = sorted(target for target in imports_of(name) if layer_of(target) > layer_of(name))
    assert not above, f"{name} (layer {layer_of(name) + 1}) imports from a layer above it: {', '.join(above)}"


def test_every_import_inside_the_package_names_something_that_exists():
    import importlib

    missing = []
    for name, path in MODULES.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and node.level):
                continue  # (absolute imports of allmlp are not used inside the package)
            anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([node.module] if node.module else []))
            module = importlib.import_module(base)
            missing += [f"{name}:{node.lineno} {base}.{alias.name}" for alias in node.names
                        if not hasattr(module, alias.name) and f"{base}.{alias.name}" not in MODULES]
    assert not missing, missing  # e.g. a lazy `from . import x` left behind when a module moved into a package


def test_config_imports_nothing_from_the_package():
    assert imports_of("allmlp.config") == set()
    assert imports_of("allmlp.compat") == set()


def test_models_import_neither_tasks_nor_checkpoint_nor_cli():
    for name in (n for n in MODULES if n.startswith("allmlp.models")):
        wrong = {t for t in imports_of(name) if t.split(".")[1] in ("tasks", "checkpoint", "cli", "engine", "viz")}
        assert not wrong, f"{name} imports {wrong}"


def test_no_import_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def data_model_args(cfg) -> dict:
    """The model arguments an image task takes from its data set (shape, classes), from the data set's description
    alone (nothing is loaded)."""
    from allmlp.data.images import get_dataset
    from allmlp.models import model_info
    from allmlp.tasks import classification

    if model_info(cfg.model.name)["task"] != "image":
        return {}
    spec = get_dataset(cfg.data.name)
    size = getattr(cfg.data, "img_size", 0) or spec.shape[1]  # data.img_size: images resized for the model
    return classification.data_model_args(cfg, spec.shape[0], size, len(spec.classes))


@pytest.mark.parametrize("preset", preset_names())
def test_every_shipped_preset_builds_its_model(preset):
    cfg = build_config(preset)
    with torch.device("meta"):  # Mixer-B/16 and friends without their memory
        model = create_model(cfg.model.name, **{**data_model_args(cfg), **cfg.model.args})
    assert isinstance(model, torch.nn.Module)
    if "vocab_size" in model_kwargs(cfg.model.name):
        assert is_language_model(model), f"{preset}: {cfg.model.name} breaks the language-model protocol"


TEXT_MODELS = list_models("text") + list_models("ngram") + list_models("gbm")


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_every_text_model_keeps_the_protocol(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    assert is_language_model(model), f"{name}: lm_kind {getattr(model, 'lm_kind', None)!r}, context_length " \
                                     f"{getattr(model, 'context_length', None)!r}"
    vocab, T = model_kwargs(name)["vocab_size"].default, model.context_length
    idx = torch.randint(0, vocab, (2, T))
    with torch.no_grad():
        logits = model(idx)
    expected = (2, T, vocab) if model.lm_kind == "causal" else (2, vocab)
    assert tuple(logits.shape) == expected and torch.isfinite(logits).all()
    if model.lm_kind == "causal":  # position t sees positions <= t only
        changed = idx.clone()
        changed[:, -1] = (changed[:, -1] + 1) % vocab
        with torch.no_grad():
            other = model(changed)
        assert torch.allclose(logits[:, :-1], other[:, :-1], atol=1e-5)
    embeddings = hook(model, "char_embeddings")
    if embeddings is not None:
        assert embeddings().shape[0] == vocab
    matrices = hook(model, "token_mixing_matrices")
    for matrix in matrices() if matrices is not None else []:
        assert matrix.shape[-2:] == (T, T)
