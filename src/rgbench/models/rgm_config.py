"""Settings of the discrete RGM (:mod:`rgbench.models.rgm`): one dataclass per ``rgm:`` block
of config.yaml, built with :func:`rgbench.config.build`. No field has a default: config.yaml
is their one home. Each switch's first value in config.yaml is the SPM demo's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

QUANTISER_TILINGS = ("rbf", "square")
MODE_RULES = ("spm", "ratio")
BIN_RULES = ("maxabs", "sd")
PRIORS = ("spm2024", "spm_head", "scaled")
GATES = ("tensor_mi", "accept_all")
COUNT_RULES = ("full", "top_k")
SCHEMES = ("spm_forward", "exact")
ELBOS = ("spm_demo", "sum_levels", "exact")


def check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    """Stop with a message naming the setting when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


@dataclass
class QuantiserConfig:
    """``rgm.quantiser``: pixels -> outcomes (:mod:`rgbench.models.rgm_quantiser`)."""

    image_size: int          # 32
    tile: int                # spacing of group centres (and side of a square tile) in pixels
    tiling: str              # rbf: overlapping Gaussian-weighted groups (spm_tile); square: disjoint tiles
    rbf_sigma: float         # SD of the radial-basis weights (spm_tile: tile / 2)
    rbf_radius: float        # pixels closer than this to a centre belong to its group (spm_tile: 2 tile)
    center: bool             # subtract each group's mean before the SVD (the demo does not)
    mode_rule: str           # spm: eigenvalue x channels x pixels / total > 1 / su; ratio: s_k / s_1 > sv_threshold
    su: float                # spm_rgb2O's RGB.su
    channel_copies: int      # the demo copies grey into 3 RGB channels, which scales spm_svd's threshold
    sv_threshold: float      # ratio rule only
    max_modes: int           # singular variates kept per group at most
    n_bins: int              # quantisation levels per variate (odd)
    bins: str                # maxabs: centres linspace(-max|u|, max|u|, n_bins); sd: width bin_width SDs around the mean
    bin_width: float         # sd bins only
    histogram_width: float   # S of the equalisation curve exp(-(rank - n)^2 / (S n))

    def __post_init__(self) -> None:
        check_choice("tiling", self.tiling, QUANTISER_TILINGS)
        check_choice("mode_rule", self.mode_rule, MODE_RULES)
        check_choice("bins", self.bins, BIN_RULES)
        if self.image_size % self.tile:
            raise ValueError(f"image_size {self.image_size} is not a multiple of tile {self.tile}")
        if self.n_bins < 3 or self.n_bins % 2 == 0:
            raise ValueError(f"n_bins must be odd and >= 3 so that one bin is centred on 0, got {self.n_bins}")
        if self.max_modes < 1:
            raise ValueError(f"max_modes must be >= 1, got {self.max_modes}")

    @property
    def grid(self) -> int:
        return self.image_size // self.tile


@dataclass
class HierarchyConfig:
    """``rgm.hierarchy``: the factor tree that structure learning fills, and its priors."""

    l1_block: int            # groups per side owned by one level-1 factor (the demo: 2)
    block: int               # child factors per side under one parent
    prior: str               # spm2024: normalise(onehot + p); spm_head: onehot + p; scaled: p (onehot + floor)
    concentration: float     # p of the structure levels (1/16)
    top_concentration: float  # p of the class level (1/128)
    prior_floor: float       # scaled prior only: pseudo-count of unseen entries relative to p
    n_classes: int

    def __post_init__(self) -> None:
        check_choice("prior", self.prior, PRIORS)
        if self.l1_block < 1 or self.block < 2:
            raise ValueError(f"l1_block must be >= 1 and block >= 2, got {self.l1_block}, {self.block}")


@dataclass
class LearningConfig:
    """``rgm.learning``: active learning over the stream."""

    gate: str                # tensor_mi: each tensor's update weighted by sigmoid(beta dMI); accept_all
    beta: float
    eta: float | None        # forgetting: accepted counts times eta / (eta + weight); null = none
    counts: str              # full: outer products of the posteriors; top_k: the top_k columns above tol
    top_k: int
    tol: float

    def __post_init__(self) -> None:
        check_choice("gate", self.gate, GATES)
        check_choice("counts", self.counts, COUNT_RULES)
        if self.eta is not None and self.eta <= 0:
            raise ValueError(f"eta must be positive or null, got {self.eta}")


@dataclass
class InferenceConfig:
    """``rgm.inference``: how beliefs and the ELBO are computed."""

    scheme: str              # spm_forward: the demo's single prior-weighted pass; exact: tree message passing
    prune: float | None      # spm_forward: drop states below e^-prune before each update (null: keep all)
    elbo: str                # ranks the confident half: spm_demo (F of the top structure level + class level),
                             # sum_levels (F of every level) or exact (log evidence)
    batch: int

    def __post_init__(self) -> None:
        check_choice("scheme", self.scheme, SCHEMES)
        check_choice("elbo", self.elbo, ELBOS)
        if self.elbo != "exact" and self.scheme != "spm_forward":
            raise ValueError(f"elbo {self.elbo} needs scheme spm_forward")


@dataclass
class RGMConfig:
    """The whole model: the four blocks above, checked to fit together."""

    quantiser: QuantiserConfig
    hierarchy: HierarchyConfig
    learning: LearningConfig
    inference: InferenceConfig

    def __post_init__(self) -> None:
        grid = self.quantiser.grid
        if grid % self.hierarchy.l1_block:
            raise ValueError(f"the {grid}x{grid} group grid cannot be split into level-1 blocks of "
                             f"{self.hierarchy.l1_block}")
        n = grid // self.hierarchy.l1_block
        while n > 1:
            if n % self.hierarchy.block:
                raise ValueError(f"factor grid {grid // self.hierarchy.l1_block} cannot be halved down to 1x1 by "
                                 f"blocks of {self.hierarchy.block}")
            n //= self.hierarchy.block

    @property
    def level_sides(self) -> list[int]:
        """Factor grid side per structure level, bottom to top: e.g. [4, 2, 1]."""
        sides, n = [], self.quantiser.grid // self.hierarchy.l1_block
        while True:
            sides.append(n)
            if n == 1:
                return sides
            n //= self.hierarchy.block

