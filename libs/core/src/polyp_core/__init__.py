"""The contract between training (the producer) and serving and control (the consumers).

- ``preprocess``: the one image transform (letterbox, ImageNet normalisation) and its inverse;
- ``repository``: the Triton model repository layout, tensor names and ``config.pbtxt``;
- ``job``: a training job's parameters (defaults, bounds, command line) and the summary it prints;
- ``home``: where local state lives when nothing else is configured (``POLYP_HOME``).
"""
