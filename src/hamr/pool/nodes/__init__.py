"""The node kinds: local (worker processes here), remote (`hamr agent` over HTTP) and Ray (a node actor).

Each implements the contracts in hamr/pool/contracts.py: an Executor, its DeviceWorkers, ReplicaSessions
and a NodeGroup the pool's loop drives.
"""
