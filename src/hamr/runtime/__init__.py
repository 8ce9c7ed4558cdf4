"""The runtime: devices present on this host, and sessions that run executables on them."""
