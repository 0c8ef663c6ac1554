"""The statistical peers of a combined LSTM, fitted in a helper process while its networks train.

A default fit needs each statsforecast peer fitted three times (before the weighting days,
before the stopping days, on every day: tasks/lstm.py), and those fits depend on the history
alone, not on the networks. The networks' small steps are bound by dispatch more than by
arithmetic (README, "Speed"), so on a machine with a second core the peers are fitted there
at the same time. The fits are the same ones (same code and inputs, pickled back), so
the forecasts do not change; only where the work runs does.

The helper lives as long as one fit: started before the networks, collected after them, and
terminated at once if the fit stops (a signal, an error), so a stopped retrain leaves no process.
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


def helper_allowed() -> bool:
    """Whether a helper process gains anything: a second core for this process."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores > 1


@contextmanager
def peers_fitted_beside(fits: list[PeerFit]) -> Iterator[None]:
    """Fit these peers in a helper process during the `with` block; on leaving it normally, wait
    for them and keep them where `fitted_statsforecast` finds them.

    Fits already kept are not repeated. Without a second core, or if the helper fails, nothing
    is kept and each peer is fitted in this process when it is asked for (a peer that cannot be
    fitted then raises its own error here). The helper is a fresh interpreter (`python -m
    tasks.peer_fits`), not a multiprocessing child: that would run the caller's main script again.
    """
    wanted = list(dict.fromkeys(fit for fit in fits if not is_fitted(*fit)))
    if not wanted or not helper_allowed():
        yield
        return
    helper = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        _send(helper, wanted)
        yield
        fitted = _received(helper)
        if fitted is None:
            log.warning("the helper process fitted no statistical peers; fitting them here instead")
            return
        for (model_name, series), model in zip(wanted, fitted, strict=True):
            keep_fitted(model_name, series, model)
        log.info("fitted %d statistical peer model(s) in a helper process beside the networks", len(wanted))
    finally:
        helper.kill()  # a no-op once it has exited; a stop mid-fit leaves no helper behind
        helper.wait()
        helper.stdout.close()


def _send(helper: subprocess.Popen, fits: list[PeerFit]) -> None:
    try:
        helper.stdin.write(pickle.dumps(fits))
        helper.stdin.close()
    except BrokenPipeError:  # the helper ended at start: `_received` finds no answer, the peers are fitted here
        pass


def _received(helper: subprocess.Popen) -> list | None:
    answer = helper.stdout.read()
    return pickle.loads(answer) if helper.wait() == 0 and answer else None


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
