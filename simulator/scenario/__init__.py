"""Input: scenario files into objects, checked before anything runs.

* :mod:`.parse` -- :func:`load_scenario` and :func:`parse_scenario`: a TOML file
  into a :class:`Scenario` (cluster, model, training, strategies, faults);
* :mod:`.tomlfile` -- a TOML file read within limits: its size, how deep it
  nests, how long its numbers are;
* :mod:`.cluster_table` -- the ``[cluster]`` table: a preset, or nodes of several kinds;
* :mod:`.schema` -- the keys every table allows, derived from the dataclasses
  and registries (:mod:`simulator.keys`), so the parser, the documentation, the
  code and Python callers agree;
* :mod:`.schedule_file` -- ``schedule = "file:PATH.csv"``, read and parsed once;
* :mod:`.limits` -- resource limits, checked before anything is built;
* :mod:`.sizes` -- the sizes a run asks for, against the limits (a file's and a
  Python caller's alike);
* :mod:`.paths` -- bounded reads of input files and safe output names.
"""

from .parse import Scenario, load_scenario, parse_scenario

__all__ = ["Scenario", "load_scenario", "parse_scenario"]
