"""movement lowerings (being written)."""
