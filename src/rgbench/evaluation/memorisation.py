"""Does a generator copy its training images? Each sample's distance to its nearest
training image against the same distance for held-out test images (the shared check of
every generator in the seed-003 comparison, EBMs and traditional models alike)."""

from __future__ import annotations

import numpy as np
import torch

NEAREST_CHUNK = 10_000  # training images per distance matrix


def nearest_training_distances(images: np.ndarray, train: np.ndarray,
                               chunk: int = NEAREST_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """For each (N, H, W) level image, its nearest training image by Euclidean distance
    between level vectors: (L2 distance, Hamming distance to that same neighbour).

    Exact for L2 (and so an exact copy, distance 0, is always found). The Hamming column
    is that of the L2-nearest image, not a second search: a Hamming search needs a matrix
    product per level, four times the cost, and the two neighbours coincide whenever the
    nearest image is a near-copy, which is what the check looks for."""
    if len(images) == 0:
        return np.zeros(0), np.zeros(0)
    a = torch.as_tensor(np.asarray(images).reshape(len(images), -1), dtype=torch.float32)
    a_sq = (a * a).sum(1, keepdim=True)
    best = torch.full((len(a),), float("inf"), dtype=torch.float64)
    best_index = torch.zeros(len(a), dtype=torch.long)
    flat_train = np.asarray(train).reshape(len(train), -1)
    for start in range(0, len(flat_train), chunk):
        b = torch.as_tensor(flat_train[start:start + chunk], dtype=torch.float32)
        # squared distances from the Gram matrix: integer-valued (levels are integers, at
        # most 784 * 9), so float32 holds them exactly
        d2 = (a_sq + (b * b).sum(1)[None, :] - 2.0 * a @ b.T).clamp_(min=0.0)
        value, index = d2.min(1)
        better = value.double() < best
        best[better] = value.double()[better]
        best_index[better] = index[better] + start
    nearest = flat_train[best_index.numpy()]
    hamming = (nearest != a.numpy().astype(flat_train.dtype)).sum(1)
    return np.sqrt(best.numpy()), hamming.astype(np.float64)


def memorisation(samples: np.ndarray, test: np.ndarray, train: np.ndarray) -> dict[str, float]:
    """Do the samples sit closer to the training images than fresh images do? The median
    distance from each sample to its nearest training image against the same for as many
    test images (which the model never saw); a ratio near 1 says no more copying than a
    new draw from the data would show, well below 1 says memorised. Also the share of
    samples that are exact copies of a training image."""
    n = min(len(samples), len(test))
    sample_l2, sample_hamming = nearest_training_distances(samples[:n], train)
    test_l2, test_hamming = nearest_training_distances(test[:n], train)

    def ratio(a: float, b: float) -> float:
        return a / b if b > 0 else float("nan")

    out = {"memorisation_images": n,
           "nearest_train_l2_samples": float(np.median(sample_l2)), "nearest_train_l2_test": float(np.median(test_l2)),
           "nearest_train_hamming_samples": float(np.median(sample_hamming)),
           "nearest_train_hamming_test": float(np.median(test_hamming)),
           "exact_copy_fraction": float((sample_l2 == 0).mean()) if n else float("nan"),
           "test_exact_copy_fraction": float((test_l2 == 0).mean()) if n else float("nan")}
    out["memorisation_l2_ratio"] = ratio(out["nearest_train_l2_samples"], out["nearest_train_l2_test"])
    out["memorisation_hamming_ratio"] = ratio(out["nearest_train_hamming_samples"], out["nearest_train_hamming_test"])
    return out
