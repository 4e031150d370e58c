"""The model interface's names: the one input and the outputs every registered model's forward returns
(its output dict's keys) and every exported graph (ONNX, int8, TensorRT, Triton) uses.

A leaf module, without torch, so that both the model registry (``deepfake.modeling.models``) and the
model store (``deepfake.modeling.store``, which re-exports them as part of the model format, and builds
models from the registry) import them without importing each other.
"""

from __future__ import annotations

__all__ = ["INPUT_NAME", "LOGIT", "MASK"]

INPUT_NAME = "image"  # the one input: (N, 3, S, S) float32, normalised by deepfake.media.face_input
LOGIT = "logit"  # every model: (N, 1) logits of "fake"
MASK = "mask"  # U-YNet only: (N, 1, S, S) logits of the manipulated pixels
