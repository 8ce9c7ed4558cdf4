"""Device drivers: one plugin per kind of hardware, registered by entry point (`hamr.drivers`)."""
