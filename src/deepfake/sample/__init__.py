"""A tiny built-in sample in every supported dataset layout, made from the packaged face photos.

Each photo is one person and becomes one REAL clip (the still animated with a smooth pan, zoom, small
rotation and lighting drift). Fakes are made from those clips by three manipulation families
(:mod:`deepfake.media.manipulations`): a face swap, an expression reenactment (Face2Face) and a
re-rendered lower-face texture (NeuralTextures). The same people and clips appear in every layout, and a
person is in one official split everywhere.

One concern per module:

- ``annotations``: the packaged photos and their ``landmarks.json`` (written once with MTCNN by
  ``write_annotations``; generation itself is pure NumPy + OpenCV);
- ``plan``: the settings (``SampleConfig``), people, identity groups, official splits, clip plans and
  every layout's ids and names, drawn from ``seed``;
- ``motion``: clip animation (pan, zoom, rotation, lighting; the clip whose face leaves the frame);
- ``render``: rendering the reals and the manipulations into a render cache, encoding and reading back;
- ``writers``: one module per layout, named as the adapter in ``deepfake.media.layouts`` that reads it
  (``dfdc`` for the DFDC training parts, ``ffpp``, ``celebdf``, ``dfdc_test``, ``dfdcp``,
  ``deeperforensics``), plus the ``identities`` maps;
- ``build``: ``build_sample``: plan, render, write each folder and swap it in whole.

Generation is driven by ``numpy.random.default_rng(seed)`` (each manipulation by a generator seeded
from ``seed`` and its people), so the same config gives byte-identical files on the same software stack.

A layer between ``media`` and ``stages``: it imports ``core`` and ``media`` only; the ``sample`` stage
(``deepfake.stages.sample``) and the ``deepfake sample`` command call it. This package file stays empty
of code, so importing one module does not import the others.
"""
