"""The main job's wall-clock deadline: past it, the job stops with an error naming the step it was in."""

from __future__ import annotations

import contextlib
import signal
from typing import Callable

from ..recipe.runtime import RecipeError


class DeadlineExceeded(RecipeError):
    """The main job ran past its wall-clock deadline."""


@contextlib.contextmanager
def wall_clock_deadline(seconds: float | None, *, where: Callable[[], str]):
    """Raise `DeadlineExceeded` in the main thread once `seconds` of wall time have passed (POSIX `SIGALRM`);
    `where()` names the step then running. No-op for `None`/0 or off the main thread / without `SIGALRM`."""
    import threading

    usable = bool(seconds) and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum, frame):
        raise DeadlineExceeded(f"the main job passed its {seconds / 60:g}-minute deadline during {where()}; its "
                               "results so far are in the output folder. Rerun the remaining steps with --steps, or "
                               "raise --deadline_minutes on a slow or busy machine")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)


__all__ = ["DeadlineExceeded", "wall_clock_deadline"]
