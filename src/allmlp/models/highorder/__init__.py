"""High-order (piecewise polynomial) layers and the language networks of the language-interpolation project."""
