"""Polyp segmentation training: data, model, Ray Train loop, MLflow tracking, ONNX export.

Importing the package imports nothing heavy. The image transform lives in polyp_inference.preprocess,
shared with serving.
"""
