"""How far a long simulation has got: an estimate up front and a progress bar; and
how far the writing of its files has.

A run's work is known before it starts: every simulated worker walks its
program once per step, and each instruction costs about one simulation event
(:attr:`simulator.runtime.Runtime.estimated_events`), so a huge run says how
big it is before it starts, and the bar (tqdm, on standard error, only when
that is a terminal) moves as the instructions are run. Output meant for
programs (``--json``) is never touched.
"""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm

#: Runs estimated above this many events announce themselves before they start.
ANNOUNCE_EVENTS = 2_000_000


class ProgressBar:
    """A progress bar for the run ``name`` of about ``total`` events (or other ``unit``:
    the files written), shown only when ``enabled`` and stderr is a terminal."""

    def __init__(self, name: str, total: int, enabled: bool, unit: str = "ev") -> None:
        self.total = total
        self.name = name
        self.unit = unit
        self.active = enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressBar:
        if self.active:
            if self.unit == "ev" and self.total > ANNOUNCE_EVENTS:
                print(f"{self.name}: about {self.total:.3g} events to simulate", file=sys.stderr)
            self._bar = tqdm(
                total=self.total,
                desc=self.name,
                unit=self.unit,
                unit_scale=self.unit == "ev",
                file=sys.stderr,
                leave=False,
            )
        return self

    def update(self, done: float) -> None:
        """``done`` instructions run (files written: a fraction is a file begun) so far."""
        if self._bar is not None:
            self._bar.n = min(done, self.total)
            self._bar.refresh()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
