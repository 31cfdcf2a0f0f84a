"""MADE: a masked autoencoder for distribution estimation (Germain et al. 2015) of 4-level
images, the pipeline's autoregressive model with an exact likelihood.

The image's D = 28 x 28 pixels are read in raster order. An MLP maps the image to D
categorical distributions (a softmax over the L = 4 levels per pixel), and binary masks on
its weights make the logits of pixel d depend on pixels 1..d-1 only, so

    log p(x) = sum_d log p(x_d | x_<d)

is exact, normalised, and costs one forward pass. Masks follow the paper's degree rule:
input pixel d has degree d; every hidden unit k has a degree m(k) in 1..D-1 and sees the
units of the layer below whose degree is <= m(k); the output of pixel d sees the units of
the last hidden layer whose degree is < d. Degrees are spread evenly over 1..D-1 (not
drawn at random, so a model's connectivity does not depend on its seed).

With ``classes`` > 0 the model is class-conditional, p(x | y): a learnt embedding of the
label is added to the pre-activation of every hidden layer and to the output logits (a
label is known before any pixel, so it may reach every unit without breaking the
autoregressive property).

Sampling draws the pixels one at a time at temperature 1. It does not run D full forward
passes: a hidden unit of degree m depends only on pixels 1..m, so it is computed once,
at the step where pixel m has been drawn, and never again. A whole sample then costs
about one forward pass of arithmetic, spread over D small steps.

The input layer (:class:`LevelLinear`) reads the levels, not their indicators: about 80%
of MNIST's pixels are at level 0, whose indicators are all zero, and every other pixel has
exactly one indicator set, so the product of the indicator vector and the weight matrix is
the sum of ~150 of the matrix's columns per image, a gather-and-sum instead of a
2,352-wide dense product (the same numbers up to rounding, at a fraction of the cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from rgbench.data.preprocess import LEVELS


@dataclass
class MADEConfig:
    height: int = 28
    width: int = 28
    levels: int = LEVELS
    hidden: tuple[int, ...] = field(default=(500,))  # units per hidden layer; () gives a masked logistic model
    classes: int = 0  # 0: p(x); 10: the class-conditional p(x | y)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if self.height < 1 or self.width < 1 or self.height * self.width < 2:
            raise ValueError(f"MADE needs at least 2 pixels, got {self.height}x{self.width}")
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {self.hidden}")
        if self.classes < 0:
            raise ValueError(f"classes must be >= 0, got {self.classes}")

    @property
    def pixels(self) -> int:
        return self.height * self.width


class MaskedLinear(nn.Linear):
    """nn.Linear whose weight is multiplied by a fixed 0/1 mask (a buffer, saved with the
    model) on every use, so masked weights get zero gradient and never act."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor) -> None:
        super().__init__(in_features, out_features)
        if mask.shape != (out_features, in_features):
            raise ValueError(f"mask shape {tuple(mask.shape)} != ({out_features}, {in_features})")
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


def column_major(t: torch.Tensor) -> torch.Tensor:
    """A copy of the 2-D ``t`` with the same shape and values whose columns are contiguous
    in memory (strides (1, rows)): ``column_major(t).t()`` is a contiguous tensor."""
    return t.t().contiguous().t()


def level_bags(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) int64 levels -> (indices, offsets) of the indicator encoding's ones, in the
    form of ``F.embedding_bag``: image n's bag holds pixel * (levels - 1) + level - 1 of
    its pixels above level 0, in pixel order, from indices[offsets[n]] on (an image with
    no such pixel has an empty bag)."""
    image, pixel = x.nonzero(as_tuple=True)  # row-major: image by image, pixels in order
    indices = pixel * (levels - 1) + x[image, pixel] - 1
    counts = torch.bincount(image, minlength=len(x))
    return indices, counts.cumsum(0) - counts


class LevelLinear(nn.Linear):
    """The input layer of level images: an nn.Linear of the images' indicators of levels
    1..L-1 (pixel-major, level 0 all zeros), optionally with a fixed
    0/1 mask as :class:`MaskedLinear`, whose forward takes the (N, D) int64 levels
    themselves and computes

        F.linear(indicators(x), masked_weight(), bias)

    as the sum of the masked weight's columns of each image's indicators that are 1 (one
    per pixel above level 0; ``F.embedding_bag``), and its weight gradient as the matching
    scatter-add. Masked weights get zero gradient, as in MaskedLinear.

    Parameters, buffers and their shapes are nn.Linear's (and MaskedLinear's ``mask``),
    with the same initialisation; only their memory order differs: the weight (and the
    mask) are stored column-major (strides (1, out_features)), so the columns the gather
    reads are contiguous rows of ``weight.t()`` without a transposed copy per step. A
    state dict in either order loads into it (``load_state_dict`` copies values).
    """

    def __init__(self, pixels: int, levels: int, out_features: int, mask: torch.Tensor | None = None) -> None:
        super().__init__(pixels * (levels - 1), out_features)
        self.levels = levels
        # the values nn.Linear drew, in column-major order
        self.weight = nn.Parameter(column_major(self.weight.detach()))
        if mask is not None:
            if mask.shape != self.weight.shape:
                raise ValueError(f"mask shape {tuple(mask.shape)} != {tuple(self.weight.shape)}")
            mask = column_major(mask.to(self.weight.dtype))
        self.register_buffer("mask", mask)  # None: unmasked, and no entry in the state dict

    def masked_weight(self) -> torch.Tensor:
        return self.weight if self.mask is None else self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) int64 levels in 0..levels-1 -> (N, out_features)."""
        indices, offsets = level_bags(x, self.levels)
        # .t() of the column-major weight is contiguous (.contiguous() is then free): a row
        # per indicator, so the gather reads, and its gradient writes, whole rows
        rows = self.masked_weight().t().contiguous()
        return F.embedding_bag(indices, rows, offsets, mode="sum") + self.bias


def hidden_degrees(units: int, pixels: int) -> torch.Tensor:
    """Degrees 1..pixels-1 spread evenly over ``units`` hidden units (non-decreasing)."""
    return 1 + torch.arange(units) * (pixels - 1) // units


class MADE(nn.Module):
    """p(x) (or p(x | y)) of (N, H, W) level images as a product of per-pixel softmaxes."""

    def __init__(self, config: MADEConfig) -> None:
        super().__init__()
        self.config = config
        d, levels = config.pixels, config.levels
        # Inputs: indicators of levels 1..L-1 per pixel (level 0 is all zeros), pixel-major;
        # a one-hot of all L levels would add a quarter more weights to the widest layer and
        # nothing a bias cannot do.
        in_degrees = torch.arange(1, d + 1).repeat_interleave(levels - 1)
        out_degrees = torch.arange(1, d + 1).repeat_interleave(levels)
        # The first layer (the output layer when there is no hidden one) reads the levels
        # themselves (LevelLinear); its forward takes (N, D) levels, not their indicators.
        layers = []
        below = in_degrees
        for units in config.hidden:
            degrees = hidden_degrees(units, d)
            mask = degrees[:, None] >= below[None, :]
            layers.append(LevelLinear(d, levels, units, mask) if not layers else MaskedLinear(len(below), units, mask))
            below = degrees
        self.hidden_layers = nn.ModuleList(layers)
        out_mask = out_degrees[:, None] > below[None, :]
        self.output = (MaskedLinear(len(below), d * levels, out_mask) if layers
                       else LevelLinear(d, levels, d * levels, out_mask))
        if config.classes:
            # One embedding per layer: the label's contribution to each layer's pre-activation.
            self.label_hidden = nn.ModuleList(nn.Embedding(config.classes, units) for units in config.hidden)
            self.label_output = nn.Embedding(config.classes, d * levels)
            for embedding in [*self.label_hidden, self.label_output]:
                nn.init.zeros_(embedding.weight)  # start as the unconditional model
        # Units of each hidden layer by degree, for the sampler (a list per layer, indexed by degree).
        self._by_degree = [[torch.nonzero(layer_degrees == m).flatten() for m in range(d)]
                           for layer_degrees in (hidden_degrees(u, d) for u in config.hidden)]

    @property
    def conditional(self) -> bool:
        return self.config.classes > 0

    def parameter_count(self) -> int:
        """Trainable parameters, masked-out weights included (they exist but never act)."""
        return int(sum(p.numel() for p in self.parameters()))

    def active_parameter_count(self) -> int:
        """Parameters that can act: unmasked weights, biases and label embeddings."""
        masked = [self.output, *self.hidden_layers]
        dropped = sum(int((layer.mask == 0).sum()) for layer in masked)
        return self.parameter_count() - dropped

    # ------------------------------------------------------------------ checks

    def check_images(self, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W) or (N, H*W) integer levels -> (N, D) int64, or a ValueError that says
        what is wrong."""
        return check_levels(x, self.config.height, self.config.width, self.config.levels)

    def check_labels(self, labels: torch.Tensor | None, n: int) -> torch.Tensor | None:
        return check_labels(labels, n, self.config.classes)

    # ------------------------------------------------------------------ likelihood

    def logits(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """(N, D, L) logits of every pixel's level given the pixels before it."""
        x = self.check_images(x)
        labels = self.check_labels(labels, len(x))
        labels = labels.to(x.device) if labels is not None else None
        h = x  # the first layer reads the levels (LevelLinear)
        for i, layer in enumerate(self.hidden_layers):
            pre = layer(h)
            if labels is not None:
                pre = pre + self.label_hidden[i](labels)
            h = torch.relu(pre)
        out = self.output(h)
        if labels is not None:
            out = out + self.label_output(labels)
        return out.view(len(x), self.config.pixels, self.config.levels)

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) (or log p(x | y)) in nats per image, shape (N,)."""
        levels = self.check_images(x)
        return categorical_log_prob(self.logits(levels, labels), levels).sum(-1)

    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Exact negative log-likelihood in nats per image, shape (N,)."""
        return -self.log_prob(x, labels)

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, H, W) uint8, drawn pixel by pixel at temperature 1 (module docstring:
        each hidden unit is computed once, when the last pixel it sees has been drawn)."""
        cfg = self.config
        d, levels = cfg.pixels, cfg.levels
        device = self.output.weight.device
        labels = self.check_labels(labels, n)
        labels = labels.to(device) if labels is not None else None
        dtype = self.output.weight.dtype
        images = torch.zeros(n, d, dtype=torch.long, device=device)
        inputs = torch.zeros(n, d * (levels - 1), dtype=dtype, device=device)
        acts = [torch.zeros(n, units, dtype=dtype, device=device) for units in cfg.hidden]
        # Sampling keeps the dense indicator inputs: each step adds one pixel's indicators and
        # computes a unit or two (.contiguous(): the first layer's weight is column-major, and
        # the steps read its rows)
        weights = [layer.masked_weight().contiguous() for layer in self.hidden_layers]
        out_weight = self.output.masked_weight().contiguous()
        label_hidden = [emb(labels) for emb in self.label_hidden] if labels is not None else None
        label_output = self.label_output(labels) if labels is not None else None
        for pixel in range(d):
            # Before drawing pixel `pixel` (0-based), the units of degree `pixel` become
            # computable: they see the first `pixel` pixels, all drawn by now. Lower layers first.
            for i, (layer, weight) in enumerate(zip(self.hidden_layers, weights)):
                units = self._by_degree[i][pixel]
                if not len(units):
                    continue
                below = inputs if i == 0 else acts[i - 1]
                pre = below @ weight[units].T + layer.bias[units]
                if label_hidden is not None:
                    pre = pre + label_hidden[i][:, units]
                acts[i][:, units] = torch.relu(pre)
            rows = slice(pixel * levels, (pixel + 1) * levels)
            last = acts[-1] if acts else inputs
            logits = last @ out_weight[rows].T + self.output.bias[rows]
            if label_output is not None:
                logits = logits + label_output[:, rows]
            level = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(1)
            images[:, pixel] = level
            inputs[:, pixel * (levels - 1):(pixel + 1) * (levels - 1)] = F.one_hot(level, levels)[:, 1:].to(dtype)
        return images.view(n, cfg.height, cfg.width).to(torch.uint8)


# ----------------------------------------------------------------------------- likelihood
# Shared with rgbench.models.vae: both models' pixels are categorical over the levels.

def categorical_log_prob(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[value] per pixel: ``logits`` (..., L), ``values`` integer levels
    broadcastable to ``logits.shape[:-1]``; returns that shape.

    The same numbers as ``Categorical(logits=logits).log_prob(values)``, bit for bit, forward
    and backward (tests/test_generative.py checks both): torch's Categorical
    normalises every level (logits - logsumexp) and then gathers one; gathering first and
    subtracting the same logsumexp skips the (..., L) normalised copy and the broadcast, 30%
    of the VAE's importance-weighted evaluation (py-spy, docs/costs.md). The levels are
    checked once by the callers (``check_levels``), so nothing here validates them."""
    index = values.long().expand(logits.shape[:-1]).unsqueeze(-1)
    return logits.gather(-1, index).squeeze(-1) - logits.logsumexp(-1)


# ----------------------------------------------------------------------------- input checks
# Shared with rgbench.models.vae: both models read the same level images and labels.

def check_levels(x: torch.Tensor, height: int, width: int, levels: int) -> torch.Tensor:
    """(N, H, W) or (N, H*W) integer levels in 0..levels-1 -> (N, H*W) int64; a
    ValueError / TypeError naming the problem otherwise (a float image is refused rather than
    rounded: a caller passing grey values by mistake should hear of it)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor of levels, got {type(x).__name__}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"expected integer levels 0..{levels - 1}, got dtype {x.dtype}")
    if x.dim() == 3 and tuple(x.shape[1:]) == (height, width):
        x = x.reshape(len(x), height * width)
    elif not (x.dim() == 2 and x.shape[1] == height * width):
        raise ValueError(f"expected images of shape (N, {height}, {width}) or (N, {height * width}), "
                         f"got {tuple(x.shape)}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= levels):
        raise ValueError(f"levels must lie in 0..{levels - 1}, got values in {int(x.min())}..{int(x.max())}")
    return x.long()


def check_labels(labels: torch.Tensor | None, n: int, classes: int) -> torch.Tensor | None:
    """Labels (n,) int64 in 0..classes-1 for a conditional model, None for an unconditional one."""
    if not classes:
        if labels is not None:
            raise ValueError("this model is unconditional; it takes no labels")
        return None
    if labels is None:
        raise ValueError(f"this model is class-conditional ({classes} classes); it needs labels")
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dim() != 1 or len(labels) != n:
        raise ValueError(f"expected {n} integer labels, got shape {tuple(labels.shape)} dtype {labels.dtype}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}, got {int(labels.min())}..{int(labels.max())}")
    return labels.long()
