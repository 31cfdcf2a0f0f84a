"""rgbench: a reproducible benchmark of hierarchical and renormalisation-inspired models."""

__version__ = "0.1.0"
