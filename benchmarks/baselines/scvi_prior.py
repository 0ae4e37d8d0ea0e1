"""The "scVI prior sampling" baseline: train scVI, then decode z ~ N(0, I) into sampled counts.

The baseline the latent rectified flow must beat: an NB/ZINB/Poisson VAE (``scvi.model.SCVI``) whose
latent samples come from its own prior instead of a learned latent flow.

Conditioning
    Prior sampling ``z ~ N(0, I)`` is unconditional, while the protocol scores generated cells per
    condition level. The condition (when given) is therefore passed to scVI as its ``batch_key``: the
    decoder takes the level as a one-hot input, so decoding the same prior draw under two levels gives
    two level-specific distributions. (scVI's default encoder does not see the batch,
    ``encode_covariates=False``; since the decoder is given the level, ``z`` need not encode it, but
    nothing forces the per-level aggregate posterior to equal N(0, I), which is the gap a latent flow
    can close.) Without a condition the model has a single batch.

Library size
    scVI (default ``use_observed_lib_size=True``) does not model library size, so for each generated
    cell ``log l ~ Normal(mean, sd)`` with mean / sd of the log total counts of the training cells of
    the cell's condition level (all training cells when unconditional). ``log l`` is what scVI's
    ``generative(library=...)`` expects (``px_rate = exp(library) * px_scale``).

Counts
    Decoded with ``model.module.generative(z=z, library=log_l, batch_index=level_code)`` and sampled
    from the returned distribution (``px.sample()``), not its mean.

Training uses scVI's defaults apart from ``gene_likelihood``, ``n_latent`` and ``max_epochs``
(``None``: scVI's heuristic ``min(round(20000 / n_obs * 400), 400)``), including its 90 / 10
train / validation split of the given cells. ``scvi.settings.seed = seed`` seeds Python's, NumPy's and
torch's global RNGs (Lightning's ``seed_everything``), as scVI always does; generation itself uses a
private torch generator plus a forked global RNG, so equal seeds give identical cells.

Cost (2 CPU cores, 2 torch threads, batch 128, 3-epoch runs): about 0.5 s wall per epoch on PBMC3k
(2,110 x 2,000) and about 47 s per epoch on kang2018_ifnb (11,199 x 14,053), with the machine lightly
shared (several times slower under heavier load); scVI's default heuristic is 400 epochs for both, i.e.
hours on kang2018_ifnb, so pass ``max_epochs`` there.

Requires the bench extra (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import logging
import resource
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

__all__ = ["scvi_prior_generate"]

_BATCH = 4096
_LIKELIHOODS = ("nb", "zinb", "poisson")


def _import_scvi():
    try:
        import scvi  # noqa: PLC0415
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            'scvi-tools is required for the scVI prior baseline; install the bench extra: pip install -e ".[bench]"'
        ) from err
    return scvi


def _cpu_seconds() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _training_copy(train: ad.AnnData, condition_key: str | None, layer: str | None) -> ad.AnnData:
    """A fresh, minimal AnnData (CSR float32 counts, the condition as str categories) for scVI."""
    x = train.layers[layer] if layer is not None else train.X
    counts = sp.csr_matrix(x, dtype=np.float32, copy=True)
    data = counts.data
    if data.size and (data.min() < 0 or not np.all(np.equal(np.floor(data), data))):
        raise ValueError("scVI needs raw non-negative integer counts (in `layer` or X).")
    obs = pd.DataFrame(index=pd.Index(train.obs_names.astype(str), dtype=object).copy())
    if condition_key is not None:
        if condition_key not in train.obs:
            raise KeyError(f"condition_key {condition_key!r} is not a column of train.obs")
        obs[condition_key] = pd.Categorical(train.obs[condition_key].astype(str).to_numpy())
    var = pd.DataFrame(index=pd.Index(train.var_names.astype(str), dtype=object).copy())
    return ad.AnnData(X=counts, obs=obs, var=var)


def _library_params(counts: sp.csr_matrix, codes: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per level mean and sd of log total counts over the (non-empty) training cells."""
    totals = np.asarray(counts.sum(axis=1)).ravel()
    mean, sd = np.zeros(n_levels), np.zeros(n_levels)
    keep = totals > 0
    for k in range(n_levels):
        lib = np.log(totals[(codes == k) & keep])
        if lib.size == 0:
            raise ValueError(f"Condition level {k} has no training cell with positive total counts.")
        mean[k] = lib.mean()
        sd[k] = lib.std(ddof=1) if lib.size > 1 else 0.0
    return mean, sd


def scvi_prior_generate(
    train: ad.AnnData,
    condition_key: str | None,
    conditions: np.ndarray | None,
    n_cells: int,
    *,
    likelihood: str = "nb",
    n_latent: int = 10,
    max_epochs: int | None = None,
    seed: int = 0,
    layer: str | None = None,
) -> tuple[ad.AnnData, dict]:
    """Train scVI on a copy of ``train`` and generate cells by decoding prior samples.

    Parameters
    ----------
    train
        Training cells; raw integer UMI counts in ``layers[layer]`` (or X). Not modified.
    condition_key
        obs column to condition on (passed to scVI as ``batch_key``), or ``None``.
    conditions
        One level of ``condition_key`` per generated cell (length ``n_cells``). ``None`` with a
        ``condition_key``: levels drawn with the training frequencies; ``None`` without: unconditional.
    n_cells
        Number of cells to generate.
    likelihood
        scVI ``gene_likelihood``: ``"nb"``, ``"zinb"`` or ``"poisson"``.
    n_latent, max_epochs, seed
        scVI latent size, epochs (``None``: scVI's heuristic) and the seed for training and sampling.
    layer
        Layer holding the counts (``None``: X).

    Returns
    -------
    (generated, info)
        ``generated``: CSR integer-valued float32 counts, ``var_names`` of ``train``,
        ``obs[condition_key]`` (categorical, the training levels as categories) and
        ``obs["source"] = "generated"``. ``info``: ``train_wall_s``, ``train_cpu_s``, ``max_epochs``,
        ``n_epochs_trained``, ``n_latent``, ``likelihood``, ``scvi_version``, ``torch_threads``.
    """
    scvi = _import_scvi()
    from scvi import REGISTRY_KEYS  # noqa: PLC0415
    from scvi.model._utils import get_max_epochs_heuristic  # noqa: PLC0415

    if likelihood not in _LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {_LIKELIHOODS}, got {likelihood!r}")
    n_cells = int(n_cells)
    if conditions is not None:
        if condition_key is None:
            raise ValueError("`conditions` given without a `condition_key`.")
        conditions = np.asarray(conditions).astype(str)
        if conditions.ndim != 1 or conditions.size != n_cells:
            raise ValueError(f"`conditions` must be 1-D with n_cells={n_cells} entries, got shape {conditions.shape}.")
    if n_cells < 0:
        raise ValueError("n_cells must be non-negative.")

    adata = _training_copy(train, condition_key, layer)
    if conditions is not None:  # fail before the (long) training
        unknown = sorted(set(conditions) - set(adata.obs[condition_key].cat.categories))
        if unknown:
            raise ValueError(f"Unknown condition level(s) {unknown[:5]}; not in train.obs[{condition_key!r}].")

    quiet = ("lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning")
    pl_loggers = [logging.getLogger(name) for name in quiet]
    saved = (scvi.settings.verbosity, [lg.level for lg in pl_loggers])
    scvi.settings.verbosity = logging.WARNING
    for lg in pl_loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning noise, not about the data (scVI's own data warnings are kept).
            warnings.filterwarnings("ignore", message=".*logging interval.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            scvi.settings.seed = seed
            scvi.model.SCVI.setup_anndata(adata, batch_key=condition_key)
            model = scvi.model.SCVI(adata, n_latent=n_latent, gene_likelihood=likelihood)
            epochs = int(max_epochs) if max_epochs is not None else int(get_max_epochs_heuristic(adata.n_obs))
            cpu0, wall0 = _cpu_seconds(), time.perf_counter()
            model.train(max_epochs=epochs, enable_progress_bar=False, enable_model_summary=False)
            train_wall, train_cpu = time.perf_counter() - wall0, _cpu_seconds() - cpu0
    finally:
        scvi.settings.verbosity = saved[0]
        for lg, level in zip(pl_loggers, saved[1], strict=True):
            lg.setLevel(level)
    history = getattr(model, "history", None) or {}
    n_trained = len(history["elbo_train"]) if "elbo_train" in history else epochs

    # Level names in scVI's code order (a single level when unconditional).
    mapping = model.adata_manager.get_state_registry(REGISTRY_KEYS.BATCH_KEY).categorical_mapping
    levels = [str(v) for v in mapping] if condition_key is not None else []
    if condition_key is None:
        train_codes = np.zeros(adata.n_obs, dtype=np.int64)
    else:
        train_codes = pd.Categorical(adata.obs[condition_key].astype(str), categories=levels).codes.astype(np.int64)
    lib_mean, lib_sd = _library_params(adata.X, train_codes, max(len(levels), 1))

    rng = np.random.default_rng(seed)
    if condition_key is None:
        codes = np.zeros(n_cells, dtype=np.int64)
    elif conditions is None:
        freq = np.bincount(train_codes, minlength=len(levels)) / train_codes.size
        codes = rng.choice(len(levels), size=n_cells, p=freq).astype(np.int64)
    else:
        index = {lev: k for k, lev in enumerate(levels)}
        unknown = sorted(set(conditions) - set(index))
        if unknown:
            raise ValueError(f"Unknown condition level(s) {unknown[:5]}; trained on: {', '.join(levels)}.")
        codes = np.array([index[c] for c in conditions], dtype=np.int64)

    module = model.module
    module.eval()
    device = next(module.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    chunks = []
    fork_devices = [device] if device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)  # px.sample() draws from torch's global RNG; forked so the caller's is untouched
        for start in range(0, n_cells, _BATCH):
            c = torch.from_numpy(codes[start : start + _BATCH])
            b = c.numel()
            z = torch.randn(b, n_latent, generator=gen)
            eps = torch.randn(b, generator=gen, dtype=torch.float64)
            log_l = torch.from_numpy(lib_mean)[c] + torch.from_numpy(lib_sd)[c] * eps
            out = module.generative(
                z=z.to(device),
                library=log_l.float().unsqueeze(1).to(device),
                batch_index=c.unsqueeze(1).to(device),
            )
            x = out["px"].sample().cpu().numpy().astype(np.float32)
            chunks.append(sp.csr_matrix(np.rint(x)))
    if chunks:
        counts = sp.vstack(chunks, format="csr").astype(np.float32)
    else:
        counts = sp.csr_matrix((0, adata.n_vars), dtype=np.float32)

    obs = pd.DataFrame(index=[f"gen_{i}" for i in range(n_cells)])
    if condition_key is not None:
        obs[condition_key] = pd.Categorical.from_codes(codes, categories=levels)
    obs["source"] = "generated"
    generated = ad.AnnData(X=counts, obs=obs, var=pd.DataFrame(index=list(train.var_names)))

    info = {
        "train_wall_s": float(train_wall),
        "train_cpu_s": float(train_cpu),
        "max_epochs": epochs,
        "n_epochs_trained": int(n_trained),
        "n_latent": int(n_latent),
        "likelihood": likelihood,
        "scvi_version": str(scvi.__version__),
        "torch_threads": torch.get_num_threads(),
    }
    return generated, info
