"""The local node kind: a worker process per device and tenant on this machine, contained to the tenant's staging."""
