"""The one error for a user's mistake: a bad option, an unknown vehicle, no warehouse yet, a
data directory that cannot be used. Any layer may raise it; the `fleetlake` command prints
its message on stderr and exits with status 2, without a traceback. Everything else that
goes wrong is the program's failure (status 1)."""


class UserError(Exception):
    """A mistake the user can fix; the message says what was wrong and what to do."""
