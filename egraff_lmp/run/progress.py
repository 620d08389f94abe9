"""Progress of a run on stderr, the same for every engine.

On a terminal it is tqdm's bar. Without one (CI, Slurm, ``> log 2>&1``) a bar would write a
carriage-return frame every few steps into the log, so there it is a plain line every 10 %
of the steps::

    plugin engine: 500/1000 steps (50 %), 35.2 ms/step

(ms/step over the steps done so far, setups apart, as in run.json).
"""

from __future__ import annotations

import sys

#: plain lines at every this many percent of the steps
PLAIN_EVERY_PERCENT = 10


class Progress:
    """Steps of a run: :meth:`add` the steps of each ``run`` command as it starts,
    :meth:`update` with the steps done and the seconds they took, :meth:`close` at the end.
    ``tty`` says whether the stream ends on a terminal (default: ask the stream; an MPI
    rank's stderr is a pipe of mpiexec's, whatever the terminal behind it)."""

    def __init__(self, desc: str, stream=None, tty: bool | None = None):
        self.desc = desc
        self.stream = sys.stderr if stream is None else stream
        self.total = self.done = 0
        self.seconds = 0.0
        self._mark = 0  # plain lines: the last multiple of PLAIN_EVERY_PERCENT written
        self._bar = None
        if tty is None:
            tty = is_terminal(self.stream)
        if tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=0, unit="step", desc=desc, file=self.stream)

    def add(self, steps: int) -> None:
        self.total += steps
        self._mark = self._percent() // PLAIN_EVERY_PERCENT * PLAIN_EVERY_PERCENT
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def update(self, steps: int, seconds: float) -> None:
        self.done += steps
        self.seconds += seconds
        if self._bar is not None:
            self._bar.update(steps)
            return
        percent = self._percent()
        if percent >= self._mark + PLAIN_EVERY_PERCENT:
            self._mark = percent // PLAIN_EVERY_PERCENT * PLAIN_EVERY_PERCENT
            speed = f", {1000 * self.seconds / self.done:.1f} ms/step" if self.done else ""
            print(f"{self.desc}: {self.done}/{self.total} steps ({percent} %){speed}",
                  file=self.stream, flush=True)

    def _percent(self) -> int:
        return 100 * self.done // self.total if self.total else 0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(callable(isatty) and isatty())
    except ValueError:  # a closed stream
        return False
