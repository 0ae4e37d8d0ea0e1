"""The one exception a metric raises when the data make it undefined.

The protocol catches it and reports the metric as ``None`` with the exception's message as the
reason, so a result never holds NaN.
"""

from __future__ import annotations


class MetricUndefined(Exception):
    """A metric cannot be computed on these data; ``str(exc)`` is the reason shown in the result."""
