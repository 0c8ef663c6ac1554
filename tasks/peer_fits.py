"""The statistical peers of a combined LSTM, fitted in a helper process while its networks train.

A default fit needs each statsforecast peer fitted three times (before the weighting days,
before the stopping days, on every day: tasks/lstm.py), and those fits depend on the history
alone, not on the networks. The networks' small steps are bound by dispatch more than by
arithmetic (README, "Speed"), so on a machine with a second core the peers are fitted there
at the same time. The fits are the same ones (same code and inputs, pickled back), so
the forecasts do not change; only where the work runs does.

A helper answers fit after fit: once it answered, it waits (idle) for the next fit of this process,
so a run over many series starts one, not one per series (its start and imports: about 2 s of the
second core, in a retrain whose networks train in 5). A helper still fitting when its fit stops (a
signal, an error) is terminated at once, so a stopped retrain leaves no process fitting; the idle one
ends with this process (at exit, or on reading the end of its input if this process is killed).
A daily retrain starts the helper of its final fit's peers on every day ahead, before its backtest
(`peers_fitted_ahead`): the fit then collects those instead of fitting them again.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tasks.forecasters import fit_statsforecast, is_fitted, keep_fitted

log = logging.getLogger(__name__)

PeerFit = tuple[str, bytes]  # statsforecast model name, the float64 series it is fitted on


class _Helper:
    """A helper process fitting peers: `python -m tasks.peer_fits`, a fresh interpreter (a multiprocessing
    child would run the caller's main script again). Each fit is a message on its input, answered by one on
    its output; `fits` are those it was last given."""

    def __init__(self):
        self.fits: list[PeerFit] = []
        self.collected, self.answered = True, False
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def start(self, fits: list[PeerFit]) -> _Helper:
        self.fits, self.collected, self.answered = fits, False, False
        with suppress(BrokenPipeError):  # the helper ended: `collect` finds no answer, the peers are fitted here
            _send(self.process.stdin, fits)
        return self

    def collect(self, where: str) -> bool:
        """Wait for the fits and keep them where `fitted_statsforecast` finds them (once); if the helper failed,
        nothing is kept and each peer is fitted in this process when it is asked for. Whether it answered."""
        if self.collected:
            return self.answered
        self.collected = True
        fitted = _receive(self.process.stdout)
        self.answered = fitted is not None
        if fitted is None:
            log.warning("the helper process fitted no statistical peers; fitting them here instead")
            return False
        for (model_name, series), model in zip(self.fits, fitted, strict=True):
            keep_fitted(model_name, series, model)
        log.info("fitted %d statistical peer model(s) in a helper process %s", len(self.fits), where)
        return True

    def close(self) -> None:
        self.process.kill()  # a no-op once it has exited; a stop mid-fit leaves no helper behind
        self.process.wait()
        with suppress(BrokenPipeError):  # what it was not given
            self.process.stdin.close()
        self.process.stdout.close()


_idle: list[_Helper] = []  # at most one helper that answered its fit, waiting for this process's next


def _helper(fits: list[PeerFit]) -> _Helper:
    """A helper given these fits: the idle one if it is still running, else a new one."""
    while _idle:
        helper = _idle.pop()
        if helper.process.poll() is None:
            return helper.start(fits)
        helper.close()
    return _Helper().start(fits)


def _done(helper: _Helper) -> None:
    """A helper left by its fit: kept idle if it answered and none is, else ended (still fitting: killed)."""
    if helper.collected and helper.answered and not _idle:
        _idle.append(helper)
    else:
        helper.close()


@atexit.register
def _end_idle() -> None:
    while _idle:
        _idle.pop().close()


_ahead: dict[PeerFit, _Helper] = {}  # fits a helper started ahead is fitting, for the fit that will ask for them


def helper_allowed() -> bool:
    """Whether a helper process gains anything: a second core for this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > 1


@contextmanager
def peers_fitted_beside(fits: list[PeerFit]) -> Iterator[None]:
    """Fit these peers in a helper process during the `with` block; on leaving it normally, wait
    for them and keep them where `fitted_statsforecast` finds them.

    Fits already kept are not repeated; those a helper started ahead is fitting (`peers_fitted_ahead`)
    are collected from it. Without a second core, or if the helper fails, nothing is kept and each
    peer is fitted in this process when it is asked for (a peer that cannot be fitted then raises
    its own error here).
    """
    ahead = list(dict.fromkeys(_ahead[fit] for fit in fits if fit in _ahead))  # each collected once
    wanted = _unfitted(fits)
    helper = _helper(wanted) if wanted and helper_allowed() else None
    try:
        yield
        if helper is not None:
            helper.collect("beside the networks")
        for earlier in ahead:
            earlier.collect("started ahead of the fit")
    finally:
        if helper is not None:
            _done(helper)


@contextmanager
def peers_fitted_ahead(fits: list[PeerFit]) -> Iterator[None]:
    """Fit these peers in a helper process from now on, for a fit later in the `with` block, which collects
    them when its networks are done (`peers_fitted_beside`). Without a second core nothing is started; the
    helper ends with the block (fits no fit collected are dropped)."""
    wanted = _unfitted(fits)
    if not wanted or not helper_allowed():
        yield
        return
    helper = _helper(wanted)
    _ahead.update(dict.fromkeys(wanted, helper))
    try:
        yield
    finally:
        for fit in wanted:
            _ahead.pop(fit, None)
        _done(helper)


def _unfitted(fits: list[PeerFit]) -> list[PeerFit]:
    """These fits, once each, but those kept or being fitted by a helper started ahead."""
    return list(dict.fromkeys(fit for fit in fits if not is_fitted(*fit) and fit not in _ahead))


def _send(stream, value) -> None:
    """One message: its length, then the pickle."""
    data = pickle.dumps(value)
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    """The next message, or None at the end of the stream (the other side ended or failed)."""
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = struct.unpack(">Q", header)[0]
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def main() -> None:
    """The helper: for each message of fits on stdin, the fitted models on stdout (its own prints go to stderr);
    it ends when its input does (the caller ended or was killed)."""
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    while (fits := _receive(sys.stdin.buffer)) is not None:
        try:
            fitted = [fit_statsforecast(model_name, series) for model_name, series in fits]
        except Exception:  # no traceback twice: the caller fits these peers itself and raises the error there
            sys.exit(1)
        try:
            _send(results, fitted)
        except BrokenPipeError:  # the caller was killed before reading: nobody to answer, nothing to flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), results.fileno())
            return


if __name__ == "__main__":
    main()
