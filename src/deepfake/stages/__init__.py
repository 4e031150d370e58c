"""Layer 4: one module per DVC stage, each with the one stage contract:
``Config.from_params(params)``, a ``Paths`` dataclass and ``run(config, paths) -> report``.

A stage module never imports another stage module; what two stages share lives in a lower layer.
This package file stays empty of code: every stage script runs it, so whatever it imported would
become a DVC dependency of every stage.
"""
