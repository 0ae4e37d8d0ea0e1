"""What generation produces: generated cells as AnnData (provenance in ``uns``), trajectories as AnnData,
and generation streamed in chunks into an ``.h5ad`` file."""
