"""The Ray Serve application that serves the model repository (charts/inference, backend: rayserve)."""

from .app import application, build, local_repository, serve_locally

__all__ = ["application", "build", "local_repository", "serve_locally"]
