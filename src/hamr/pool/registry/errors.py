"""The registry's errors: each is one line, as every HamrError."""

from hamr.errors import HamrError


class RegistryError(HamrError):
    """The pool registry refused an operation."""


class NotFound(RegistryError):
    """No such object *for this tenant*: another tenant's object reads as missing, never as forbidden."""


class InvalidTransition(RegistryError):
    """A job was asked to move to a state its state machine does not allow from where it is."""


class StaleAttempt(InvalidTransition):
    """A move was asked for an attempt of a job that is no longer its current attempt (a late result)."""


class QuotaExceeded(RegistryError):
    """A request goes beyond the tenant's quota."""


class QueueFull(QuotaExceeded):
    """The tenant has as many jobs waiting as it may (max_queued_jobs): try again once some have started."""


class StorageFull(QuotaExceeded):
    """Storing this would take the tenant beyond max_stored_bytes."""
