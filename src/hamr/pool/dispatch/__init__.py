"""Placing and running jobs on one node: the Dispatcher, gang splits, busy time, and the node's deployment replicas."""
