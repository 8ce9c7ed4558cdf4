"""The computing-force pool: drivers that discover accelerators, the registry, the scheduler, and the node kinds
(docs/architecture.md, "The pool": the layout, hamr/pool/contracts.py and the words)."""
