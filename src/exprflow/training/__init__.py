"""Training: Lightning training plans (flow, count VAE, nucleotide LM), the fit loop (devices, DDP,
checkpoints, resume), trainer options and per-phase budgets, seeded initialisation, loss histories and
reflow."""
