import itertools
import json

import pytest

from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from tests.conftest import run


def pipeline():
    return run(
        MLPConfig(4, 16),
        Strategy("p", pp=2, microbatches=4, schedule="1f1b"),
        global_batch=8,
        steps=2,
        seed=7,
    )


def test_chrome_trace_is_valid_trace_event_json():
    trace = json.loads(json.dumps(pipeline().trace.to_chrome()))
    events = trace["traceEvents"]
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert {"compute", "comm"} <= names
    complete = [e for e in events if e["ph"] == "X"]
    assert complete and all({"name", "pid", "tid", "ts", "dur"} <= e.keys() for e in complete)
    assert all(e["dur"] >= 0 for e in complete)
    assert any(e["ph"] == "C" and e["name"] == "memory" for e in events)
    # within one thread, events never overlap (Chrome requires nesting)
    by_thread = {}
    for e in complete:
        by_thread.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(spans))


def test_same_seed_same_trace_byte_for_byte(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    pipeline().trace.write_chrome(a)
    pipeline().trace.write_chrome(b)
    assert a.read_bytes() == b.read_bytes()


def test_a_finished_runs_trace_is_sealed():
    trace = pipeline().trace
    assert trace.sealed and len(trace) > 0
    with pytest.raises(RuntimeError, match="read-only"):
        trace.record(0, 0.0, 1.0)
    with pytest.raises(RuntimeError, match="read-only"):
        trace.add(0, "compute", 0.0, 1.0, "x", "F")
    chrome = trace.to_chrome()  # reading still works, memory counters from the frozen ledgers
    assert any(e["ph"] == "C" for e in chrome["traceEvents"])


def test_one_devices_event_of_a_row_is_what_expanding_the_row_gives_it():
    from simulator.nn.gpt import GPTConfig

    model = GPTConfig(layers=2, hidden=32, heads=4, seq_len=8, vocab=64)
    result = run(model, Strategy("h", dp=2, tp=2, pp=2, microbatches=2), global_batch=4, steps=1)
    trace = result.trace
    events = [(i, e) for i in range(len(trace)) for e in trace.expand([i])]
    assert {e.args.get("direction") for _, e in events} >= {"send", "recv"}
    assert all(trace.event(i, e.device) == e for i, e in events)
