"""SimPy's events, written out for the hot paths.

``env.timeout(delay)`` is three calls (``Environment.timeout``,
``Timeout.__init__``, ``Environment.schedule``); a large shape-only run makes
millions of them. :func:`timeout` sets the same fields and pushes the same
entry onto the event queue without them, so the simulation is event for event
the one ``env.timeout`` would give; :func:`until` does it for a time rather
than a delay. :func:`pending` is ``env.event()`` and :func:`fire_at` triggers
such an event later, as ``Environment.schedule`` would: one each per message a
worker waits for.
"""

from __future__ import annotations

from heapq import heappush
from typing import Any

import simpy
from simpy.core import NORMAL
from simpy.events import PENDING, Event, Timeout

_new = object.__new__


def timeout(env: simpy.Environment, delay: float) -> Timeout:
    """``env.timeout(delay)`` for a ``delay >= 0`` (the caller's promise: SimPy would
    check it), scheduled as :meth:`simpy.Environment.schedule` does. (:func:`until` at
    ``env.now + delay``, written out: it runs once per event of a large run, and the
    call would cost it about a sixth.)"""
    done = _new(Timeout)
    done.env = env
    done.callbacks = []
    done._value = None
    done._delay = delay
    done._ok = True
    heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), done))
    return done


def until(env: simpy.Environment, when: float) -> Timeout:
    """A timeout that fires at ``when >= env.now`` exactly (``timeout(env, when - now)``
    fires at ``now + (when - now)``, which floating point may round away from
    ``when``)."""
    done = _new(Timeout)
    done.env = env
    done.callbacks = []
    done._value = None
    done._delay = when - env._now
    done._ok = True
    heappush(env._queue, (when, NORMAL, next(env._eid), done))
    return done


def pending(env: simpy.Environment) -> Event:
    """``env.event()``: an event not triggered yet, for a process to wait on."""
    event = _new(Event)
    event.env = env
    event.callbacks = []
    event._value = PENDING
    return event


def fire_at(env: simpy.Environment, event: simpy.Event, when: float, value: Any = None) -> None:
    """Trigger ``event`` at time ``when`` (what ``succeed`` does, but later): one event,
    processed at that time, wakes whoever waits on it."""
    event._ok = True
    event._value = value
    # env.schedule(event, delay=max(0.0, when - env.now)): the same time, now + (when - now)
    now = env._now
    heappush(env._queue, (now + (when - now) if when > now else now, NORMAL, next(env._eid), event))
