"""The computing-force pool: drivers that discover accelerators, the registry, the scheduler."""
