"""The `.hamr` executable format: one file, a manifest, the portable graph, weights and variants."""

from hamr.format.container import FORMAT_VERSION

__all__ = ["FORMAT_VERSION"]
