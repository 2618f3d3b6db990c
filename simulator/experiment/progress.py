"""How far a long simulation has got: an estimate up front and a progress bar.

A run's work is known before it starts: every simulated worker walks its
program once per step, and each instruction costs about one simulation event
(:attr:`simulator.runtime.Runtime.estimated_events`), so a huge run says how
big it is before it starts, and the bar (tqdm, on standard error, only when
that is a terminal) moves as the events are processed. Output meant for
programs (``--json``) is never touched.
"""

from __future__ import annotations

import sys
from types import TracebackType

from tqdm import tqdm

#: Runs estimated above this many events announce themselves before they start.
ANNOUNCE_EVENTS = 2_000_000


class ProgressBar:
    """A progress bar for the run ``name`` of about ``total`` events, shown only when
    ``enabled`` and stderr is a terminal."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        self.total = total
        self.name = name
        self.active = enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None

    def __enter__(self) -> ProgressBar:
        if self.active:
            if self.total > ANNOUNCE_EVENTS:
                print(f"{self.name}: about {self.total:.3g} events to simulate", file=sys.stderr)
            self._bar = tqdm(
                total=self.total,
                desc=self.name,
                unit="ev",
                unit_scale=True,
                file=sys.stderr,
                leave=False,
            )
        return self

    def update(self, events: int) -> None:
        """The run has processed ``events`` events so far."""
        if self._bar is not None:
            self._bar.n = min(events, self.total)
            self._bar.refresh()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
