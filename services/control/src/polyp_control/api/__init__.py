"""Versioned HTTP routes (/v1)."""
