"""nn lowerings (being written)."""
