"""The statistical peers of a combined LSTM, fitted in a helper process while its networks train.

A default fit needs each statsforecast peer fitted three times (before the weighting days,
before the stopping days, on every day: tasks/lstm.py), and those fits depend on the history
alone, not on the networks. The networks' small steps are bound by dispatch more than by
arithmetic (README, "Speed"), so on a machine with a second core the peers are fitted there
at the same time. The fits are the same ones (same code and inputs, pickled back), so
the forecasts do not change; only where the work runs does.

The helper lives as long as one fit: started before the networks, collected after them, and
terminated at once if the fit stops (a signal, an error), so a stopped retrain leaves no process.
A daily retrain starts the helper of its final fit's peers on every day ahead, before its backtest
(`peers_fitted_ahead`): the fit then collects those instead of fitting them again.
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.forecasters import fit_statsforecast, is_fitted, keep_fitted

log = logging.getLogger(__name__)

PeerFit = tuple[str, bytes]  # statsforecast model name, the float64 series it is fitted on


class _Helper:
    """A helper process fitting peers: `python -m tasks.peer_fits`, a fresh interpreter (a multiprocessing
    child would run the caller's main script again)."""

    def __init__(self, fits: list[PeerFit]):
        self.fits, self.collected = fits, False
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            self.process.stdin.write(pickle.dumps(fits))
            self.process.stdin.close()
        except BrokenPipeError:  # the helper ended at start: `collect` finds no answer, the peers are fitted here
            pass

    def collect(self, where: str) -> None:
        """Wait for the fits and keep them where `fitted_statsforecast` finds them (once); if the helper failed,
        nothing is kept and each peer is fitted in this process when it is asked for."""
        if self.collected:
            return
        self.collected = True
        answer = self.process.stdout.read()
        fitted = pickle.loads(answer) if self.process.wait() == 0 and answer else None
        if fitted is None:
            log.warning("the helper process fitted no statistical peers; fitting them here instead")
            return
        for (model_name, series), model in zip(self.fits, fitted, strict=True):
            keep_fitted(model_name, series, model)
        log.info("fitted %d statistical peer model(s) in a helper process %s", len(self.fits), where)

    def close(self) -> None:
        self.process.kill()  # a no-op once it has exited; a stop mid-fit leaves no helper behind
        self.process.wait()
        self.process.stdout.close()


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
    helper = _Helper(wanted) if wanted and helper_allowed() else None
    try:
        yield
        if helper is not None:
            helper.collect("beside the networks")
        for earlier in ahead:
            earlier.collect("started ahead of the fit")
    finally:
        if helper is not None:
            helper.close()


@contextmanager
def peers_fitted_ahead(fits: list[PeerFit]) -> Iterator[None]:
    """Fit these peers in a helper process from now on, for a fit later in the `with` block, which collects
    them when its networks are done (`peers_fitted_beside`). Without a second core nothing is started; the
    helper ends with the block (fits no fit collected are dropped)."""
    wanted = _unfitted(fits)
    if not wanted or not helper_allowed():
        yield
        return
    helper = _Helper(wanted)
    _ahead.update(dict.fromkeys(wanted, helper))
    try:
        yield
    finally:
        for fit in wanted:
            _ahead.pop(fit, None)
        helper.close()


def _unfitted(fits: list[PeerFit]) -> list[PeerFit]:
    """These fits, once each, but those kept or being fitted by a helper started ahead."""
    return list(dict.fromkeys(fit for fit in fits if not is_fitted(*fit) and fit not in _ahead))


def main() -> None:
    """The helper: read the fits from stdin, write the fitted models to stdout (its own prints go to stderr)."""
    results = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    fits = pickle.loads(sys.stdin.buffer.read())
    try:
        fitted = [fit_statsforecast(model_name, series) for model_name, series in fits]
    except Exception:  # no traceback twice: the caller fits these peers itself and raises the error there
        sys.exit(1)
    try:
        results.write(pickle.dumps(fitted))
        results.flush()
    except BrokenPipeError:  # the caller was killed before reading: nobody to answer, nothing to flush at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), results.fileno())
    results.close()


if __name__ == "__main__":
    main()
