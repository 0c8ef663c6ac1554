"""Errors that stop a run for a known reason; their message says what happened and what was kept.

The command line prints `<command> stopped: <message>` for each, never a traceback.
"""


class RunStopped(RuntimeError):
    """A run stopped for a known reason (the command line prints the message, not a traceback)."""


class ConfigError(RunStopped, ValueError):
    """A setting is malformed, unknown or out of range; found before anything runs."""


class InputUnreadable(RunStopped, ValueError):
    """An input file is missing, a folder, too big, binary, in another encoding or not a CSV."""


class HistoryTooShort(RunStopped, ValueError):
    """Too few days to fit (or backtest) the configured model."""
