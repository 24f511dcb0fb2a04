"""The package version (a leaf module: the record, the CLI and submissions read it without importing the package API)."""

__version__ = "0.1.0"
