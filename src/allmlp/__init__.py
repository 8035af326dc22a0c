"""allmlp: one toolkit for all-MLP neural networks.

Importing the package is cheap: submodules (models, engine, data) load on demand.
"""

__version__ = "0.1.0"


def fit(model, preset: str = "fashion_mixer", run_dir=None, **options) -> dict:
    """Train a model built in Python like `allmlp train PRESET` would (see `allmlp.api.fit`)."""
    from .api import fit as fit_model

    return fit_model(model, preset, run_dir, **options)
