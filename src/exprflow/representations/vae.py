"""Count VAE (as in scVI, Lopez et al. 2018): an encoder to a small latent, a count-likelihood decoder.

::

    encoder   log1p(x / l * 1e4) -> MLP -> (q_mu, q_logvar)            (library-size invariant input)
    latent    z = q_mu + exp(q_logvar / 2) * eps       (or z = q_mu: a deterministic autoencoder)
    decoder   z -> MLP -> rho = softmax(.) over genes  (per-gene proportions)
              mu = rho * l                               (NB / ZINB / Poisson mean; l = library size)
              theta = exp(log_theta_g)                   (gene-wise inverse dispersion, learned)
              zi_logits = linear(.)                      (ZINB only)
    loss      -log p(x | mu, theta, zi) + beta * KL(q(z|x) || N(0, I))

With ``encoder="set"`` the encoder reads the genes as a set instead of a fixed-order vector (the design
of scLDM's encoder, Palla et al. 2025, here in its DeepSets form, Zaheer et al. 2017)::

    h = rho(mean_g phi(e_g + w u_g + b))      e_g: a learned embedding per gene, u_g: its log1p value

computed exactly from the detected genes only (see :class:`GeneSetEncoder`); the decoder is unchanged.

With ``n_batches > 0`` the encoder and the decoder also read the cell's batch (one-hot), as scVI does
with its batch key: the decoder explains the batch effect, so the latent need not hold it
(batch-corrected), and decoding with another batch code gives the cell "as if from" that batch.

The structure follows scVI (Lopez et al. 2018): observed library size during training, proportions
from a softmax, gene-wise dispersion. ``log_theta`` is clamped to [-10, 12] when used so that an
all-zero gene (whose maximum-likelihood dispersion is unbounded) cannot drive it to inf/NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from exprflow.distributions import LIKELIHOODS
from exprflow.errors import ExprflowInputError

_LOG_THETA_RANGE = (-10.0, 12.0)
_MIN_VAR = 1e-4
DECODE_BLOCK = 512  # cells decoded together when sampling counts


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and objective of the count VAE.

    Attributes
    ----------
    n_latent, n_hidden, n_layers, dropout
        latent size; width, hidden layers and dropout of the encoder (the decoder mirrors it, no dropout).
    norm
        ``"layer"``, ``"batch"`` (scVI's choice) or ``"none"`` after each hidden linear layer.
    likelihood
        ``"nb"``, ``"zinb"`` or ``"poisson"`` (:data:`exprflow.distributions.LIKELIHOODS`).
    deterministic
        True: an autoencoder (``z = q_mu``, no KL term).
    kl_weight, kl_warmup_fraction
        the KL term's weight, ramped up from 0 over this fraction of the training steps.
    target_sum
        the encoder's input is ``log1p(x / l * target_sum)``.
    encoder
        ``"mlp"`` (genes as a fixed-order vector) or ``"set"`` (:class:`GeneSetEncoder`).
    """

    n_latent: int = 10
    n_hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.1
    norm: str = "layer"  # "layer" | "batch" | "none": normalisation after each hidden linear layer
    likelihood: str = "nb"
    deterministic: bool = False  # True: an autoencoder (z = q_mu, no KL term)
    kl_weight: float = 1.0
    kl_warmup_fraction: float = 0.75  # KL weight ramps 0 -> kl_weight over this fraction of training steps
    target_sum: float = 1e4
    encoder: str = "mlp"  # "mlp": genes as a fixed-order vector | "set": genes as a set (GeneSetEncoder)


ENCODERS = ("mlp", "set")
SET_WIDTH = 32  # token width of the set encoder
TOKEN_BUCKET = 8192  # the set encoder's detected entries are padded to a multiple of this
_NORMS = {"layer": nn.LayerNorm, "batch": lambda n: nn.BatchNorm1d(n, momentum=0.01, eps=1e-3), "none": lambda n: nn.Identity()}


def _mlp(n_in: int, n_hidden: int, n_layers: int, dropout: float, norm: str) -> nn.Sequential:
    if norm not in _NORMS:
        raise ExprflowInputError(f"VAE norm must be one of {sorted(_NORMS)}, got {norm!r}.")
    layers: list[nn.Module] = []
    for i in range(n_layers):
        layers += [nn.Linear(n_in if i == 0 else n_hidden, n_hidden), _NORMS[norm](n_hidden), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class GeneSetEncoder(nn.Module):
    """The genes of a cell as a set: ``rho(mean_g phi(e_g + w u_g + b))`` (DeepSets, Zaheer et al. 2017).

    Each gene is a token, its learned embedding ``e_g`` plus a linear code of its log1p value ``u_g``;
    ``phi`` is shared by all tokens and the mean over the panel is invariant to the genes' order. As
    ``u_g = 0`` for undetected genes, the mean has an exact sparse form::

        sum_g phi(e_g + b) + sum_{u_g != 0} [phi(e_g + w u_g + b) - phi(e_g + b)]

    (one pass over the G embeddings per step, shared by all cells, then one ``phi`` per detected gene).
    ``rho`` maps the pooled vector, with the cell's extra covariates (one-hot batch), to ``n_hidden``.

    Parameters
    ----------
    n_genes, n_extra
        genes of the panel; extra input columns after them (the batch one-hot).
    n_hidden, dropout, norm
        as the MLP encoder's output layer.
    width
        token width.
    """

    def __init__(self, n_genes: int, n_extra: int, n_hidden: int, dropout: float, norm: str,
                 width: int = SET_WIDTH) -> None:
        super().__init__()
        self.n_genes = int(n_genes)
        self.embedding = nn.Embedding(n_genes, width)
        self.value = nn.Linear(1, width)
        self.phi = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))
        self.pooled_norm = nn.LayerNorm(width)
        self.rho = _mlp(width + n_extra, n_hidden, 1, dropout, norm)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: ``(B, n_genes + n_extra)``, log1p-normalised genes then the extra columns -> ``(B, n_hidden)``."""
        u, extra = x[:, : self.n_genes], x[:, self.n_genes :]
        phi_zero = self.phi(self.embedding.weight + self.value.bias)  # (G, width): undetected tokens
        rows, cols = torch.nonzero(u, as_tuple=True)
        values = u[rows, cols]
        # pad the detected entries to a multiple of TOKEN_BUCKET with zero-valued tokens on a spare row:
        # few distinct tensor sizes keep the allocator's heap from fragmenting (RSS grew 2.4x in 300
        # steps without it); a padded token adds phi(e_0 + b) - phi_zero[0] = 0 to a row that is dropped
        pad = -len(rows) % TOKEN_BUCKET
        rows = torch.cat([rows, rows.new_full((pad,), x.shape[0])])
        cols = torch.cat([cols, cols.new_zeros(pad)])
        values = torch.cat([values, values.new_zeros(pad)])
        tokens = self.embedding(cols) + self.value(values.unsqueeze(-1))
        delta = self.phi(tokens) - phi_zero[cols]  # (detected + pad, width)
        total = phi_zero.sum(0, keepdim=True).expand(x.shape[0] + 1, -1).index_add(0, rows, delta)[:-1]
        return self.rho(torch.cat([self.pooled_norm(total / self.n_genes), extra], dim=-1))


@dataclass
class VAEOutput:
    """One forward pass: posterior parameters, the latent used and the decoded distribution."""

    q_mu: Tensor
    q_logvar: Tensor
    z: Tensor
    px: Distribution


class CountVAE(nn.Module):
    """Encoder/decoder pair of the count VAE (see module docstring). Pure PyTorch, no training logic."""

    def __init__(self, n_genes: int, config: VAEConfig = VAEConfig(), n_batches: int = 0) -> None:
        super().__init__()
        self.config = config
        self.n_batches = int(n_batches)
        self.likelihood = LIKELIHOODS.get(config.likelihood)
        c = config
        if c.encoder not in ENCODERS:
            raise ExprflowInputError(f"VAE encoder must be one of {ENCODERS}, got {c.encoder!r}.")
        self.encoder = (_mlp(n_genes + self.n_batches, c.n_hidden, c.n_layers, c.dropout, c.norm) if c.encoder == "mlp"
                        else GeneSetEncoder(n_genes, self.n_batches, c.n_hidden, c.dropout, c.norm))
        self.q_mu = nn.Linear(c.n_hidden, c.n_latent)
        self.q_logvar = nn.Linear(c.n_hidden, c.n_latent)
        self.decoder = _mlp(c.n_latent + self.n_batches, c.n_hidden, c.n_layers, 0.0, c.norm)
        self.rho_logits = nn.Linear(c.n_hidden, n_genes)
        self.log_theta = nn.Parameter(torch.zeros(n_genes))
        self.zi_logits = nn.Linear(c.n_hidden, n_genes) if self.likelihood.needs_dropout else None

    # ------------------------------------------------------------------ encoder
    def normalise(self, counts: Tensor) -> Tensor:
        """``log1p(counts / library * target_sum)`` (cells with zero library map to zeros)."""
        library = counts.sum(-1, keepdim=True).clamp_min(1.0)
        return torch.log1p(counts / library * self.config.target_sum)

    def _with_batch(self, h: Tensor, batch: Tensor | None) -> Tensor:
        """``h`` with the one-hot batch code appended (models with ``n_batches > 0``)."""
        if self.n_batches == 0:
            return h
        if batch is None:
            raise ExprflowInputError("This VAE is conditioned on a batch key: give each cell's batch code.")
        one_hot = F.one_hot(batch.to(torch.long).reshape(-1), self.n_batches).to(h.dtype)
        return torch.cat([h, one_hot], dim=-1)

    def encode(self, counts: Tensor, batch: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance of ``q(z | x)`` for a batch of count rows ``(B, G)``."""
        h = self.encoder(self._with_batch(self.normalise(counts), batch))
        return self.q_mu(h), self.q_logvar(h)

    # ------------------------------------------------------------------ decoder
    def decode(self, z: Tensor, library: Tensor, batch: Tensor | None = None) -> Distribution:
        """The count distribution ``p(x | z, l[, s])``; ``library`` is the total count, ``(B,)`` or ``(B, 1)``."""
        h = self.decoder(self._with_batch(z, batch))
        rho = F.softmax(self.rho_logits(h), dim=-1)
        mu = rho * library.reshape(-1, 1)
        theta = torch.exp(self.log_theta.clamp(*_LOG_THETA_RANGE)).expand_as(mu)
        zi = self.zi_logits(h) if self.zi_logits is not None else None
        return self.likelihood.build(mu, theta, zi)

    @torch.no_grad()
    def sample_counts_csr(self, z: Tensor, library: Tensor, rng: np.random.Generator,
                          block_size: int = DECODE_BLOCK, batch: Tensor | None = None) -> sp.csr_matrix:
        """One draw of counts ``x ~ p(x | z, l[, batch])`` as CSR, decoded ``block_size`` cells at a time.

        Exact, and paying for the non-zero entries only (:mod:`exprflow.distributions.sparse_sampling`);
        blocks of a few hundred cells keep the decoder's ``cells x genes`` outputs in cache.
        """
        from exprflow.distributions.sparse_sampling import entries_to_csr, select_nonzero

        generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
        z, library = z.float(), library.float().reshape(-1)
        parts = []
        for lo in range(0, z.shape[0], block_size):
            rows = slice(lo, lo + block_size)
            dist = self.decode(z[rows], library[rows], None if batch is None else batch[rows])
            parts.append(select_nonzero(dist, generator).shifted(lo))
        return entries_to_csr(parts, (z.shape[0], self.rho_logits.out_features), rng)

    def proportions(self, z: Tensor, batch: Tensor | None = None) -> Tensor:
        """Decoded per-gene proportions ``rho`` (rows sum to 1)."""
        return F.softmax(self.rho_logits(self.decoder(self._with_batch(z, batch))), dim=-1)

    # ------------------------------------------------------------------ objective
    def posterior_std(self, q_mu: Tensor, q_logvar: Tensor) -> Tensor:
        """Standard deviation of ``q(z | x)`` (zeros for a deterministic autoencoder)."""
        if self.config.deterministic:
            return torch.zeros_like(q_mu)
        return torch.sqrt(torch.exp(q_logvar) + _MIN_VAR)

    def forward(self, counts: Tensor, batch: Tensor | None = None) -> VAEOutput:
        q_mu, q_logvar = self.encode(counts, batch)
        if self.config.deterministic:
            z = q_mu
        else:
            std = self.posterior_std(q_mu, q_logvar)
            z = q_mu + std * torch.randn_like(std) if self.training else q_mu
        return VAEOutput(q_mu, q_logvar, z, self.decode(z, counts.sum(-1), batch))

    def loss(self, counts: Tensor, kl_weight: float, batch: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean over cells of ``-log p(x|z) + kl_weight * KL``; also returns the parts for logging."""
        out = self(counts, batch)
        recon = -out.px.log_prob_rowsum(counts)
        if self.config.deterministic:
            kl = torch.zeros_like(recon)
        else:
            var = torch.exp(out.q_logvar) + _MIN_VAR
            kl = 0.5 * (out.q_mu.square() + var - torch.log(var) - 1.0).sum(-1)
        loss = (recon + kl_weight * kl).mean()
        return loss, {"recon": recon.mean().detach(), "kl": kl.mean().detach()}
