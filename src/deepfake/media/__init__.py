"""Layer 1: the raw material. metadata.json, video decoding, MTCNN and boxes files, the crops index,
SSIM masks, and the face-to-model-input contract (``face_input``). Imports ``core`` only.
"""
