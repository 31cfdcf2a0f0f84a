"""Data layer: verified MNIST, cached preprocessing, and the MSDS sprite generators."""
