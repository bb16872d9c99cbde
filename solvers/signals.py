"""Caffe's ``SignalHandler`` (``src/caffe/util/signal_handler.cpp``): what SIGINT, SIGTERM and
SIGHUP ask of a training run. Caffe's handler only sets flags; the solver asks once per
iteration (``Solver::GetRequestedAction``) and acts between iterations: stop, snapshot or
nothing. :class:`SignalActions` does the same for ``fcn-port train``."""
import signal
import threading


class SignalActions:
    """Caffe's ``SignalHandler``: signals only set flags; :meth:`request` returns the action of
    the first pending one (SIGHUP before SIGINT/SIGTERM, as ``CheckForSignals``) and clears it."""

    def __init__(self, sigint="stop", sighup="snapshot", sigterm="stop"):
        self.actions = {signal.SIGINT: sigint, signal.SIGTERM: sigterm}
        if hasattr(signal, "SIGHUP"):
            self.actions = {signal.SIGHUP: sighup, **self.actions}
        self.got, self._old = set(), {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in self.actions:
                self._old[s] = signal.signal(s, lambda signum, frame: self.got.add(signum))
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def request(self):
        for s, action in self.actions.items():
            if s in self.got:
                self.got.discard(s)
                return action
        return "none"


class NoSignals:
    """No signal ever asks anything (``bench --train`` timing the iteration)."""

    def request(self):
        return "none"
