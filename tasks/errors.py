"""Errors that stop a run for a known reason; their message says what happened and what was kept."""


class RunStopped(RuntimeError):
    """A run stopped for a known reason (the command line prints the message, not a traceback)."""
