"""The pool's control plane, with hamr.pool.registry and hamr.pool.scheduler: the deployment reconciler and the pool's loop."""
