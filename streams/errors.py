"""Errors a user can hit, each saying what to do about it.

    TriggerSanityError
     +-- ConfigError            bad settings or environment
     +-- PolicyError            the policy file is invalid (names key and expectation)
     +-- HistoryError           a history file cannot be opened or is not JSON Lines
     +-- BrokerError            Kafka cannot be reached or refused an admin request
     +-- UsageError             a command-line value that cannot mean anything

Bad *records* are not exceptions: ``contract.decode.decode`` returns a dead-letter
value for them, so one bad record never stops the worker.
"""


class TriggerSanityError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(TriggerSanityError):
    pass


class PolicyError(TriggerSanityError):
    pass


class HistoryError(TriggerSanityError):
    pass


class BrokerError(TriggerSanityError):
    pass


class UsageError(TriggerSanityError):
    pass
