"""Polyp segmentation training: data, model, Ray Train loop, MLflow tracking, ONNX export.

Importing the package imports nothing heavy: serving code uses polyp_train.preprocess alone.
"""
