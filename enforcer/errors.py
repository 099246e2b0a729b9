"""The one error type the enforcer raises: its message is a single line fit for a user."""


class EnforcerError(Exception):
    """Something the enforcer could not do; ``str(err)`` says what and why, on one line."""
