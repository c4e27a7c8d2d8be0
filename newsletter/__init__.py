"""Publish an email newsletter from a git repository."""

__version__ = "0.1.0"
