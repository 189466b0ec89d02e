"""The package version, in a module of its own: `raymlops/__init__.py` reaches the API lazily, and a lower layer
that needs the version (run lineage) must not import that."""

__version__ = "0.1.0"
