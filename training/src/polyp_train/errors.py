"""Failures a user can act on, each with its own exit code (documented in training/README.md)."""

from __future__ import annotations


class PolypTrainError(Exception):
    exit_code = 1


class DatasetError(PolypTrainError):
    """Missing folders or masks, unreadable images, an empty dataset."""

    exit_code = 3


class TrackingUnavailable(PolypTrainError):
    """The MLflow tracking server does not answer."""

    exit_code = 4


class StorageUnavailable(PolypTrainError):
    """S3/MinIO (or a local path) cannot be read or written."""

    exit_code = 5


class ExportError(PolypTrainError):
    """ONNX export failed its checks or its parity with PyTorch, or the version exists already."""

    exit_code = 6


EXIT_CANCELLED = 130  # SIGINT/SIGTERM, as a shell reports a signal-terminated command
