"""Errors that the CLI reports as one line (exit status 2) instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: a config, a path, a plugin name, an argument.

    The message names what is wrong, where, and what would be valid.
    """


class UnknownName(UserError, KeyError):
    """A plugin name that no registry entry matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
