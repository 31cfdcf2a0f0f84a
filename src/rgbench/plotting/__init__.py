"""Figures, drawn from tables and saved arrays (never from a model being trained)."""
