"""One module per preprocessing stage: each has a Config (from params.yaml) and a ``run``."""
