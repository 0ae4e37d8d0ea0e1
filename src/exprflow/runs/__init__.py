"""Run directories: the lock that keeps two processes out of one directory, and ``run.json``, the record
that says whether a run finished and which phases it completed."""
