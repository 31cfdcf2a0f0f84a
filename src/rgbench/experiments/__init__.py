"""Training and evaluation jobs, one module per experiment."""
