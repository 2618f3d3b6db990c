"""Pictures and tables of a finished run; they read only its results.

* :mod:`.plots` -- ``gantt``, ``memory`` and ``compare``, the pictures a run writes;
* :mod:`.gantt` -- the Gantt chart: compute, communication and bubbles per device;
* :mod:`.views` -- what the pictures read off the trace;
* :mod:`.report` -- the console comparison table;
* :mod:`.outputs` -- the files a run leaves (``results.json``, charts, traces).

Import :mod:`simulator.viz.plots` for the pictures (it loads matplotlib).
"""
