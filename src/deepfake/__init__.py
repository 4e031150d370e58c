"""deepfake: a DVC-managed, reproducible deepfake-detection pipeline for DFDC-format data."""

__version__ = "0.1.0"
