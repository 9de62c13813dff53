"""The package version, in one place: pyproject.toml reads it (``[tool.setuptools.dynamic]``) and both
``selfonn.__version__`` and ``opgan.__version__`` re-export it, so the three never disagree."""

__version__ = "0.1.0"
