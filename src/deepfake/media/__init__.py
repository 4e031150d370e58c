"""Layer 1: the raw material. Dataset layouts and the canonical index (``layouts``), metadata.json
and the stages' view of a dataset (``metadata``), video decoding, MTCNN and boxes files, the crops
index, SSIM masks, the sample's manipulation renderers (``manipulations``) and the
face-to-model-input contract (``face_input``). Imports ``core`` only.
"""
