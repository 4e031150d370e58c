"""Layer 2: models and what surrounds them. The registry (``models``), the model store (``store``),
training data and augmentations, losses, metrics, scoring, fold assignment, plots.
Imports ``core`` and ``media``.
"""
