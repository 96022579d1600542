"""Polyp segmentation inference: decode, preprocess as training did, infer (Triton or ONNX Runtime), post-process.

No torch here: the control service and the smoke test install this package alone.
"""
