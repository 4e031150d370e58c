"""Layer 3, runtime backends: a normalised NCHW batch in, one logit per crop per ensemble member out.

``base`` holds the interface and the registry (importing it loads no runtime); each runtime lives
in its own module and is imported only when asked for.
"""
