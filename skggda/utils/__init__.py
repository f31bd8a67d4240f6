"""Shared validation helpers (private)."""
