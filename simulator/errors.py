"""The one error type of tumblebench.

Every bad input (a file, a config field, a command-line value) raises :class:`TumblebenchError` with a
message that names the file or field and says what was expected. The command line prints that message on
one line and exits with status 2.
"""

from __future__ import annotations


class TumblebenchError(Exception):
    """Bad input or an impossible request, with a message that says what to fix.

    Parameters
    ----------
    message
        One line naming the file and/or field and the expectation, e.g.
        ``"spec.toml: field 'strain.uniform' = 0.2 is outside [-0.1, 0.1]"``.
    """


def require(condition: bool, message: str) -> None:
    """Raise :class:`TumblebenchError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise TumblebenchError(message)
