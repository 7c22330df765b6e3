"""Small named exceptions raised at the suite's boundaries."""


class ConfigError(ValueError):
    """A user-supplied value is not allowed; the message names it and what is allowed."""


class ResourceUnavailable(RuntimeError):
    """A model or dataset cannot be had on this machine (e.g. offline); tests skip with the message."""
