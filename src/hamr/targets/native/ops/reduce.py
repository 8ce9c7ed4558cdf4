"""reduce lowerings (being written)."""
