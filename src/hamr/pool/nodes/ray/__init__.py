"""The Ray node kind: a node actor per Ray node, one Dispatcher per node, Ray as the only transport."""
