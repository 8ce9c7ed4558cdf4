"""Lowering: placement per node, fused kernel groups, schedule and static memory plan."""
