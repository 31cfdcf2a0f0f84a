"""A variational autoencoder (Kingma & Welling 2014) of 4-level images with a categorical
decoder: the pipeline's latent-variable model with one-pass sampling.

    z ~ N(0, I)  (``latents`` dimensions),   x_d | z ~ Categorical(softmax(f_d(z)))  for every pixel d,

with an MLP decoder f and an MLP encoder q(z | x) = N(mu(x), diag sigma(x)^2). Training
maximises the evidence lower bound (ELBO) with one reparameterised draw and the KL term in
closed form. With ``classes`` > 0 the model is class-conditional, p(x | y) = E_z p(x | z, y):
a learnt embedding of the label is added to the hidden layer of both the encoder and the
decoder, and the prior stays N(0, I).

Likelihood. log p(x) has no closed form; the importance-weighted bound (IWAE, Burda, Grosse
& Salakhutdinov 2016) with K draws from q,

    log p(x) >= E[ log (1/K) sum_k p(x, z_k) / q(z_k | x) ],

tightens as K grows (K = 1 is the ELBO) and is a lower bound on log p(x) for every K, so
minus it is an upper bound on the NLL. It is stochastic: the estimate is one draw of that
expectation per image.

Sampling: z from the prior, one decoder pass, every pixel drawn independently from its
softmax at temperature 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.distributions import Normal, kl_divergence

from rgbench.data.preprocess import LEVELS
from rgbench.models.made import LevelLinear, categorical_log_prob, check_labels, check_levels


@dataclass
class VAEConfig:
    height: int = 28
    width: int = 28
    levels: int = LEVELS
    hidden: int = 500  # units of the encoder's and the decoder's hidden layer
    latents: int = 32
    classes: int = 0  # 0: p(x); 10: the class-conditional p(x | y)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height}x{self.width}")
        if self.levels < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        if self.hidden < 1 or self.latents < 1:
            raise ValueError(f"hidden and latents must be >= 1, got {self.hidden} and {self.latents}")
        if self.classes < 0:
            raise ValueError(f"classes must be >= 0, got {self.classes}")

    @property
    def pixels(self) -> int:
        return self.height * self.width


class VAE(nn.Module):
    """Gaussian latents, categorical pixels; ELBO for training, IWAE bound for evaluation."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        d, levels = config.pixels, config.levels
        # Encoder input: indicators of levels 1..L-1 per pixel (as the MADE reads images),
        # read from the levels as a gather-and-sum of weight columns (LevelLinear).
        self.encoder_hidden = LevelLinear(d, levels, config.hidden)
        self.encoder_out = nn.Linear(config.hidden, 2 * config.latents)  # mean and log standard deviation
        self.decoder_hidden = nn.Linear(config.latents, config.hidden)
        self.decoder_out = nn.Linear(config.hidden, d * levels)
        if config.classes:
            self.label_encoder = nn.Embedding(config.classes, config.hidden)
            self.label_decoder = nn.Embedding(config.classes, config.hidden)
            for embedding in (self.label_encoder, self.label_decoder):
                nn.init.zeros_(embedding.weight)

    @property
    def conditional(self) -> bool:
        return self.config.classes > 0

    def parameter_count(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))

    def _check(self, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = self.config
        x = check_levels(x, cfg.height, cfg.width, cfg.levels)
        labels = check_labels(labels, len(x), cfg.classes)
        return x, (labels.to(x.device) if labels is not None else None)

    # ------------------------------------------------------------------ the two networks

    def posterior(self, x: torch.Tensor, labels: torch.Tensor | None) -> Normal:
        """q(z | x[, y]) for checked (N, D) levels."""
        pre = self.encoder_hidden(x)
        if labels is not None:
            pre = pre + self.label_encoder(labels)
        mean, log_scale = self.encoder_out(torch.relu(pre)).chunk(2, dim=-1)
        # clamp: an untrained encoder can emit a huge log scale whose exp overflows
        return Normal(mean, log_scale.clamp(-10.0, 5.0).exp())

    def decoder_logits(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(..., D, L) pixel logits of latents z (..., latents); labels broadcast over the
        leading dimensions of z beyond the batch's."""
        pre = self.decoder_hidden(z)
        if labels is not None:
            pre = pre + self.label_decoder(labels)
        out = self.decoder_out(torch.relu(pre))
        return out.view(*z.shape[:-1], self.config.pixels, self.config.levels)

    def prior(self, like: torch.Tensor) -> Normal:
        return Normal(torch.zeros_like(like), torch.ones_like(like))

    def _log_likelihood(self, x: torch.Tensor, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """log p(x | z[, y]) summed over pixels; z may carry leading sample dimensions."""
        return categorical_log_prob(self.decoder_logits(z, labels), x).sum(-1)

    # ------------------------------------------------------------------ objectives

    def negative_elbo(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """-ELBO in nats per image (N,), one reparameterised draw, KL in closed form (the
        training loss; it draws from torch's global generator, which the training loop's
        checkpoints save, so a resumed run draws the same noise)."""
        x, labels = self._check(x, labels)
        q = self.posterior(x, labels)
        z = q.rsample()
        kl = kl_divergence(q, self.prior(q.loc)).sum(-1)
        return kl - self._log_likelihood(x, z, labels)

    @torch.no_grad()
    def iwae_bound(self, x: torch.Tensor, labels: torch.Tensor | None = None, samples: int = 100,
                   generator: torch.Generator | None = None, chunk: int = 50) -> torch.Tensor:
        """Importance-weighted upper bound on the NLL, nats per image (N,), with ``samples``
        draws from q (``chunk`` of them at a time, to bound memory). samples = 1 gives the
        negative ELBO (with a sampled rather than a closed-form KL)."""
        if samples < 1 or chunk < 1:
            raise ValueError(f"samples and chunk must be >= 1, got {samples} and {chunk}")
        x, labels = self._check(x, labels)
        q = self.posterior(x, labels)
        log_weights = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            # the reparameterisation written out: q.rsample takes no generator
            eps = torch.randn((k, *q.loc.shape), generator=generator, device=q.loc.device, dtype=q.loc.dtype)
            z = q.loc + q.scale * eps
            log_p = self._log_likelihood(x, z, labels) + self.prior(z).log_prob(z).sum(-1)
            log_weights.append(log_p - q.log_prob(z).sum(-1))
        return -(torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(samples))

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, n: int, labels: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """n images (n, H, W) uint8: z from the prior, one decoder pass, every pixel drawn
        from its softmax at temperature 1."""
        cfg = self.config
        device = self.decoder_out.weight.device
        labels = check_labels(labels, n, cfg.classes)
        labels = labels.to(device) if labels is not None else None
        z = torch.randn(n, cfg.latents, generator=generator, device=device, dtype=self.decoder_out.weight.dtype)
        probs = torch.softmax(self.decoder_logits(z, labels), -1).view(n * cfg.pixels, cfg.levels)
        levels = torch.multinomial(probs, 1, generator=generator)
        return levels.view(n, cfg.height, cfg.width).to(torch.uint8)
