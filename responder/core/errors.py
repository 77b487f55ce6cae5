"""The error hierarchy, in one place (after httpx's ``_exceptions.py``).

    DeskhandError
    ├── ConfigError          a setting is missing or wrong: start-up stops with one sentence
    ├── DatabaseUnavailable  (responder.core.db) the database can't be reached or written: the unit
    │                        of work rolls back and waits; logged once per outage
    └── DeliveryError        a channel could not deliver an outbound message
        ├── TransientError   try again later (SMTP 4xx, network errors, Twilio 429/5xx)
        ├── PermanentError   never retry (SMTP 5xx, invalid number, opted out)
        └── UnknownOutcome   handed over, then the line dropped before the answer: it may
                             have gone out, so it is never retried (the row becomes ``unknown``)

Failures never vanish: the job that catches one stores it on the row it was working on
(``status`` + ``last_error``), so the owner sees it in the queue and the digest.
"""


class DeskhandError(Exception):
    """Base of every error Deskhand raises on purpose."""


class ConfigError(DeskhandError):
    """A bad or missing setting; the message is one sentence naming the key."""


class DeliveryError(DeskhandError):
    def __init__(self, message: str, *, code: int | str | None = None):
        super().__init__(message)
        self.code = code


class TransientError(DeliveryError):
    """Delivery may succeed if tried again later."""


class PermanentError(DeliveryError):
    """Delivery will never succeed as it stands."""


class UnknownOutcome(DeliveryError):
    """The message was handed to the provider but its answer never came (SMTP: the connection
    dropped or timed out after the DATA phase began). Retrying could send it twice, so the outbox
    marks the row ``unknown`` for the owner to check, never ``retry`` (at most once)."""
