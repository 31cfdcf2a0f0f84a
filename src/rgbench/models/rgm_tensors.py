"""Likelihood tensors of the discrete RGM (:mod:`rgbench.models.rgm`), held as families.

``a[p, b, row, col]`` holds the counts of outcome ``row`` of tensor ``b`` of factor ``p``
given the parent state ``col``, with one spare row and column that padding indices point
at. Counts are kept as ``scale[p, b] x a`` so that forgetting (a multiplication of the
whole tensor) is one number; the mutual information of ``a / sum(a)`` is scale free and is
kept up to date from running sums, so the accept / reject choice costs only the entries an
image touches.
"""

from __future__ import annotations

import numpy as np
from scipy import special

RESCALE_BELOW = 1e-6                  # fold the forgetting factor into the counts below this


def _xlogx(x: np.ndarray) -> np.ndarray:
    return -special.entr(x)



class Tensors:
    """A family of Dirichlet tensors ``a[p, b, row, col]`` (outcome row given parent state
    col) of one level, with running sums for their mutual information.

    Real counts are ``scale[p, b] * a``. Index ``R`` (rows) and ``S`` (cols) are spare
    entries that stay zero: padding indices point there.
    """

    def __init__(self, a: np.ndarray, valid_rows: np.ndarray, valid_cols: np.ndarray, scale: np.ndarray | None = None):
        P, B, R, S = a.shape
        self.a = np.zeros((P, B, R + 1, S + 1))
        self.a[:, :, :R, :S] = a
        self.valid_rows = valid_rows.astype(bool)            # (P, B, R)
        self.valid_cols = valid_cols.astype(bool)            # (P, S)
        self.scale = np.ones((P, B)) if scale is None else np.array(scale, dtype=np.float64)
        self.refresh()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        P, B, R1, S1 = self.a.shape
        return P, B, R1 - 1, S1 - 1

    def refresh(self) -> None:
        """Recompute every running sum from the counts."""
        a = self.a
        self.rows = a.sum(axis=3)
        self.cols = a.sum(axis=2)
        self.total = self.rows.sum(axis=2)
        self.e_joint = _xlogx(a).sum(axis=(2, 3))
        self.e_rows = _xlogx(self.rows).sum(axis=2)
        self.e_cols = _xlogx(self.cols).sum(axis=2)

    def mutual_information(self) -> np.ndarray:
        """(P, B) MI (nats) of the joint a / sum(a) of each tensor (spm_MDP_MI)."""
        t = np.maximum(self.total, 1e-300)
        return (self.e_joint - self.e_rows - self.e_cols + _xlogx(t)) / t

    def inverse_cols(self) -> np.ndarray:
        """1 / column sums (P, B, S + 1), 0 on empty columns."""
        return np.where(self.cols > 0, 1.0 / np.where(self.cols > 0, self.cols, 1.0), 0.0)

    def expected(self) -> np.ndarray:
        """A = a / column sums (P, B, R + 1, S + 1), the spare row and column included."""
        return self.a * self.inverse_cols()[:, :, None, :]

    def up(self, q_rows: np.ndarray) -> np.ndarray:
        """sum_r q(r) A[p, b, r, s] for beliefs over rows (N, P, B, R + 1): (N, P, B, S + 1)."""
        out = np.matmul(q_rows.transpose(1, 2, 0, 3), self.a)               # (P, B, N, S + 1)
        return out.transpose(2, 0, 1, 3) * self.inverse_cols()[None]

    def down(self, q_cols: np.ndarray) -> np.ndarray:
        """sum_s A[p, b, r, s] q(s) for parent beliefs (N, P, S + 1) or (N, P, B, S + 1):
        (N, P, B, R + 1)."""
        P, B = self.scale.shape
        if q_cols.ndim == 3:
            q_cols = np.broadcast_to(q_cols[:, :, None, :], (len(q_cols), P, B, q_cols.shape[-1]))
        x = (q_cols * self.inverse_cols()[None]).transpose(1, 2, 3, 0)        # (P, B, S + 1, N)
        return np.matmul(self.a, x).transpose(3, 0, 1, 2)

    def update(self, rows: np.ndarray, u: np.ndarray, cols: np.ndarray, v: np.ndarray, gate: str, beta: float,
               eta: float | None, tensor_mask: np.ndarray) -> np.ndarray:
        """Offer each tensor (p, b) the counts u (x) v on rows ``rows[p, b]`` and columns
        ``cols[p, b]`` (padding: index R / S with weight 0); returns the weight taken in.

        ``tensor_mask`` (P, B) marks tensors that exist. With ``gate="tensor_mi"`` the
        weight is sigmoid(beta (MI(a + d) - MI(a))) (spm_MDP_VB_XXX: softmax over the
        prior and the posterior counts); the tensor becomes (a + w d) eta / (eta + w).
        """
        P, B = self.scale.shape
        pi = np.arange(P)[:, None, None, None]
        bi = np.arange(B)[None, :, None, None]
        ri, ci = rows[:, :, :, None], cols[:, :, None, :]
        block = self.a[pi, bi, ri, ci]                                   # (P, B, nr, ns)
        per = 1.0 / self.scale                                           # real counts -> stored units
        d = (u[:, :, :, None] * v[:, :, None, :]) * per[:, :, None, None]
        d_rows = d.sum(axis=3)
        d_cols = d.sum(axis=2)
        old_rows = np.take_along_axis(self.rows, rows, axis=2)
        old_cols = np.take_along_axis(self.cols, cols, axis=2)
        e_block, e_r, e_c = _xlogx(block).sum(axis=(2, 3)), _xlogx(old_rows).sum(axis=2), _xlogx(old_cols).sum(axis=2)

        def stats(w: np.ndarray) -> tuple[np.ndarray, ...]:
            wd = w[:, :, None, None] * d
            nb, nr, nc = block + wd, old_rows + (w[:, :, None] * d_rows), old_cols + (w[:, :, None] * d_cols)
            e_joint = self.e_joint - e_block + _xlogx(nb).sum(axis=(2, 3))
            e_rows = self.e_rows - e_r + _xlogx(nr).sum(axis=2)
            e_cols = self.e_cols - e_c + _xlogx(nc).sum(axis=2)
            total = self.total + w * d_rows.sum(axis=2)
            return nb, nr, nc, e_joint, e_rows, e_cols, total

        ones = tensor_mask.astype(np.float64)
        if gate == "tensor_mi":
            _, _, _, ej, er, ec, tt = stats(ones)
            t = np.maximum(tt, 1e-300)
            gain = (ej - er - ec + _xlogx(t)) / t - self.mutual_information()
            w = special.expit(beta * gain) * ones
        else:
            w = ones
        nb, nr, nc, ej, er, ec, tt = stats(w)
        self.a[pi, bi, ri, ci] = nb
        np.put_along_axis(self.rows, rows, nr, axis=2)
        np.put_along_axis(self.cols, cols, nc, axis=2)
        self.e_joint, self.e_rows, self.e_cols, self.total = ej, er, ec, tt
        if eta is not None:
            self.scale = self.scale * eta / (eta + w)
            if self.scale.min() < RESCALE_BELOW:
                self.fold_scale()
        return w

    def fold_scale(self) -> None:
        """Multiply the counts by their scale (exactly what they stand for) and reset it."""
        s = self.scale
        log_s = np.log(s)
        self.a *= s[:, :, None, None]
        self.rows *= s[:, :, None]
        self.cols *= s[:, :, None]
        # sum(s x log(s x)) = s (sum(x log x) + log(s) sum(x))
        self.e_joint = s * (self.e_joint + log_s * self.total)
        self.e_rows = s * (self.e_rows + log_s * self.total)
        self.e_cols = s * (self.e_cols + log_s * self.total)
        self.total = s * self.total
        self.scale = np.ones_like(s)

