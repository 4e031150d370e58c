"""Published detectors: fetching, converting and packaging them (the model zoo)."""
