"""Saving and loading models: the model directory (``config.json`` + ``weights.pt``, written
atomically), config round-trips and the checks made when a saved model is read."""
