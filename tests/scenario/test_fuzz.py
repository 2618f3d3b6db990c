"""A hostile user writes scenario files: every one ends in a result or in one ``error:`` line.

Hypothesis starts from small valid scenarios (an MLP, a GPT, an abstract
model) and breaks them the way a fuzzer does: infinities, NaN, huge and
negative numbers, wrong types, long strings, unknown keys and tables, up to
three faults (on devices that exist or not, at any time), bytes that are not
UTF-8, a byte-order mark, lists nested thousands deep, integers of thousands of
digits, and schedule files with every line ending, blank and empty rows and
digits that are not ASCII. ``python -m
simulator run`` (in-process) must exit with 0 or 2, print at most one
``error:`` line, and never raise.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.nn.models import model_kinds
from simulator.scenario import parse as scenario
from simulator.scenario.limits import table_limits

pytestmark = pytest.mark.fuzz

MODELS = {
    "mlp": {"kind": "mlp", "layers": 2, "width": 4},
    "gpt": {"kind": "gpt", "layers": 1, "hidden": 8, "heads": 2, "seq_len": 4, "vocab": 8},
    "abstract": {"kind": "abstract", "stages": 2, "forward_ms": [1, 2]},
}


def base(kind: str) -> dict[str, Any]:
    return {
        "name": "fuzz",
        "cluster": {"preset": "toy", "nodes": 1},
        "model": dict(MODELS[kind]),
        "training": {"global_batch": 4, "steps": 1, "numerics": kind != "abstract"},
        "strategy": [{"name": "one"}, {"name": "two", "pp": 2, "microbatches": 2}],
    }


def _schema(path: tuple[str, ...], key: str) -> scenario.Key | None:
    tables = {
        (): scenario.TOP,
        ("cluster",): scenario.CLUSTER,
        ("cluster", "device"): scenario.DEVICE,
        ("cluster", "node"): scenario.NODE,
        ("cluster", "intra_node"): scenario.LINK,
        ("cluster", "inter_node"): scenario.LINK,
        ("training",): scenario.TRAINING,
        ("strategy",): scenario.STRATEGY,
        ("limits",): scenario.LIMITS,
        ("fault",): scenario.FAULTS["straggler"] | scenario.FAULTS["slow_link"],
    }
    if path == ("model",):
        for cls in model_kinds().values():
            keys = scenario.keys_of(cls)
            if key in keys:
                return keys[key]
        return None
    return tables.get(path, {}).get(key)


# where a value can go: (path of tables, key); "strategy", "fault" and "node" mean the first
# table
KNOWN = (
    [((), k) for k in ("name", "seed", "version")]
    + [(("cluster",), k) for k in ("preset", "nodes", "devices_per_node")]
    + [(("cluster", "device"), k) for k in scenario.DEVICE]
    + [(("cluster", "node"), k) for k in scenario.NODE]
    + [(("cluster", "intra_node"), k) for k in scenario.LINK]
    + [(("cluster", "inter_node"), k) for k in scenario.LINK]
    + [(("training",), k) for k in scenario.TRAINING]
    + [(("strategy",), k) for k in scenario.STRATEGY]
    + [(("limits",), k) for k in table_limits()]
    + [(("fault",), k) for kind in scenario.FAULTS.values() for k in kind]
    + [((), "fault"), ((), "strategy"), ((), "model"), ((), "cluster"), (("model",), "kind")]
)

HOSTILE = st.one_of(
    st.sampled_from(
        [
            math.inf,
            -math.inf,
            math.nan,
            1e308,
            1e-310,
            -1,
            0,
            10**9,
            10**18,
            -(2**63),
            2**63 - 1,
            True,
            "",
            "..",
            "../../etc",
            "a" * 2000,
            "file:/dev/zero",
            "file:missing.csv",
            [1, math.nan],
            [math.inf, 1],
            [],
            {"k": 1},
        ]
    ),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
)


def good(key: scenario.Key | None) -> st.SearchStrategy[Any]:
    """Values a careful user might write for ``key``: they take the run past the parser."""
    if key is None:
        return st.integers(0, 4)
    choices = key.allowed()
    if choices:
        return st.sampled_from(choices)
    if bool in key.kind:
        return st.booleans()
    if str in key.kind:
        return st.from_regex(r"[a-z][a-z0-9.+-]{0,8}", fullmatch=True)
    lo = key.range.lo if key.range and key.range.lo is not None else 0
    if key.range and key.range.integer:
        return st.integers(int(lo), int(lo) + 3)
    return st.floats(max(lo, 0.001), max(lo, 0.001) * 4)


def value_for(where: tuple[tuple[str, ...], str]) -> st.SearchStrategy[Any]:
    plausible = good(_schema(*where))
    return st.one_of(plausible, plausible, plausible, plausible, HOSTILE)


UNKNOWN = st.tuples(
    st.tuples(st.sampled_from([(), ("cluster",), ("model",)]), st.text(max_size=8)), HOSTILE
)


def changes(kind: str) -> st.SearchStrategy[list]:
    """Up to three changes: mostly to keys the model kind knows, sometimes unknown keys."""
    model_keys = [(("model",), k) for k in scenario.keys_of(model_kinds()[kind])]
    known = st.sampled_from(KNOWN + model_keys * 3).flatmap(
        lambda w: st.tuples(st.just(w), value_for(w))
    )
    return st.lists(st.one_of(known, known, known, known, UNKNOWN), max_size=3)


FAULT = st.one_of(
    st.fixed_dictionaries(
        {
            "kind": st.just("straggler"),
            "device": st.sampled_from([0, 1, 3, 4, -1]),
            "factor": st.sampled_from([1.5, 2.0, 0.5, math.inf]),
        },
        optional={"jitter": st.sampled_from([0.1, 0.0, -1.0])},
    ),
    st.fixed_dictionaries(
        {"kind": st.just("slow_link"), "factor": st.sampled_from([0.25, 0.5, 0.0, 2.0])},
        optional={"device": st.sampled_from([0, 1, 9]), "node": st.sampled_from([0, 2])},
    ),
    st.fixed_dictionaries(
        {
            "kind": st.just("fail"),
            "device": st.sampled_from([0, 1, 3, 4, -1]),
            "at_ms": st.sampled_from([0.0, 1.0, 5.5, math.nan]),
        }
    ),
)


#: Bytes a file may hold that no parser likes: ``(where, bytes)``, inserted at that fraction
#: of the text (0: at the start, 1: at the end, on a line of its own).
GARBAGE = [
    (0.5, b"\xff"),
    (0.5, b"\xc3\x28"),
    (0.0, b"\xef\xbb\xbf"),  # a byte-order mark
    (1.0, b"\nz = " + b"[" * 5000 + b"]" * 5000 + b"\n"),
    (1.0, b"\nz = " + b"{a = " * 3000 + b"1" + b"}" * 3000 + b"\n"),
    (1.0, b"\nz = " + b"9" * 5000 + b"\n"),
    (0.0, b"seed = " + b"1" * 101 + b"\n"),
    (1.0, b"\n" + b"a." * 50 + b"b = 1\n"),
]

#: Schedule files as people write them, and as they should not: the 1F1B schedule of
#: two ranks and two micro-batches with every line ending, a byte-order mark, blank lines,
#: an empty row between the ranks, a digit that is not ASCII, a NUL, an open quote.
ROWS = [["0F0", "0F1", "0B0", "", "0B1"], ["", "1F0", "1B0", "1F1", "1B1"]]
CSV = st.tuples(
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.sampled_from(["", "\ufeff", "\n\n"]),
    st.sampled_from(["", "\n\n", "\r\n"]),
    st.sampled_from([None, "", "1F\u0661", "0F0\x00", '"0F0', "0X0", "9F9"]),
).map(
    lambda t: (
        t[1]
        + t[0].join(",".join(row) for row in (ROWS if t[3] is None else [ROWS[0], [t[3]], ROWS[1]]))
        + t[2]
    ).encode("utf-8")
)


def put(data: dict[str, Any], where: tuple[tuple[str, ...], str], value: Any) -> None:
    path, key = where
    node: Any = data
    for part in path:
        if part in ("strategy", "fault", "node"):
            node = node.setdefault(part, [{}]) if isinstance(node.get(part, []), list) else node
            node = node[0] if isinstance(node, list) and node else node
        else:
            child = node.setdefault(part, {})
            node = child if isinstance(child, dict) else node
    if isinstance(node, dict):
        node[key] = value


def toml_string(text: str) -> str:
    """A TOML basic string: every control character escaped."""
    body = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 32 or ord(c) == 127 or c in '"\\' else c for c in text
    )
    return f'"{body}"'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """Scalars first, then [tables] and [[arrays of tables]] (their own values inline)."""
    lines, later = [], []
    for k, v in data.items():
        name = f"{prefix}{toml_string(k)}"
        if isinstance(v, dict):
            later.append(f"[{name}]\n" + to_toml(v, name + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                items = (f"{toml_string(a)} = {toml_value(b)}" for a, b in x.items())
                later.append(f"[[{name}]]\n" + "\n".join(items))
        else:
            lines.append(f"{toml_string(k)} = {toml_value(v)}")
    return "\n".join(lines) + "\n" + "\n".join(later) + "\n"


@settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(sorted(MODELS)).flatmap(lambda k: st.tuples(st.just(k), changes(k))),
    st.lists(FAULT, max_size=3),
    st.sampled_from([None] * 12 + GARBAGE),
    st.one_of(st.none(), st.none(), CSV),
    # the pictures cost fifty times the run: draw them for one example in four
    st.sampled_from([False, False, False, True]),
)
def test_run_never_raises(capsys, edits, faults, garbage, csv, files) -> None:
    kind, edit_list = edits
    data = base(kind)
    if faults:
        data["fault"] = faults
    if csv is not None:
        data["strategy"][1]["schedule"] = "file:s.csv"
    for where, value in edit_list:
        put(data, where, value)
    text = to_toml(data).encode("utf-8", "surrogatepass")
    if garbage is not None:
        at, bad = garbage
        text = text[: int(len(text) * at)] + bad + text[int(len(text) * at) :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_bytes(text)
        if csv is not None:
            (Path(tmp) / "s.csv").write_bytes(csv)
        argv = ["run", str(path), "--out", str(Path(tmp) / "out")]
        code = main(argv if files else [*argv, "--no-files"])
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
