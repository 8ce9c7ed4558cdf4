"""The data-plane client at its first path: `hamr.pool.wire.client` is where it lives (docs/pool.md)."""

from hamr.pool.wire.client import *  # noqa: F403
from hamr.pool.wire.client import __all__  # noqa: F401
