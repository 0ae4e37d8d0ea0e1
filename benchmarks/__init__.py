"""The benchmarks of exprflow and their runner (``python -m benchmarks``; see README.md here)."""
