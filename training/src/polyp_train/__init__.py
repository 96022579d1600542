"""Polyp segmentation training: data, model, Ray Train loop, MLflow tracking, ONNX export.

Importing the package imports nothing heavy. What serving relies on (the image transform, the model
repository layout, the job contract and run summary) lives in polyp_core.
"""
