"""allmlp: one toolkit for all-MLP neural networks.

Importing the package is cheap: submodules (models, engine, data) load on demand.
"""

__version__ = "0.1.0"
