"""The Chrome trace in its two forms: one process per group of devices simulated as
one, or one per device. Both carry the same times and memory; the groups' form
names the devices each process stands for and keeps what differs between them."""

import gzip
import itertools
import json

import pytest

from simulator.engine import chrome
from simulator.hardware import preset
from simulator.nn.gpt import GPTConfig
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy
from tests.conftest import run

GPT = GPTConfig(layers=2, hidden=32, heads=4, seq_len=8, vocab=64)


@pytest.fixture(scope="module")
def hybrid():
    """Tensor-parallel groups in a pipeline, their data-parallel replicas folded."""
    result = run(GPT, Strategy("h", dp=2, tp=2, pp=2, microbatches=2), global_batch=4, steps=1)
    assert result.metrics["folded_replicas"] == 2
    return result


def events(chrome_json, ph="X"):
    return [e for e in chrome_json["traceEvents"] if e["ph"] == ph]


def names(chrome_json):
    return {
        e["pid"]: e["args"]
        for e in chrome_json["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }


def test_a_group_is_one_process_that_names_its_devices(hybrid):
    grouped = hybrid.trace.to_chrome()
    processes = names(grouped)
    listed = [d for args in processes.values() for d in args.get("devices", [])]
    assert sorted(listed) == list(range(8))  # each device in one process
    assert len(processes) == 2  # two pipeline ranks, each a tp group and its replica
    assert processes[0]["name"] == "devices 0-3" and processes[4]["name"] == "devices 4-7"
    every = hybrid.trace.to_chrome(every_device=True)
    assert sorted(names(every)) == list(range(8))
    assert len(events(every)) > 3 * len(events(grouped))


def test_both_forms_carry_the_same_times_and_memory(hybrid):
    grouped, every = hybrid.trace.to_chrome(), hybrid.trace.to_chrome(every_device=True)
    assert {(e["ts"], e["dur"]) for e in events(grouped)} == {
        (e["ts"], e["dur"]) for e in events(every)
    }
    assert {(e["ts"], e["args"]["MiB"]) for e in events(grouped, "C")} == {
        (e["ts"], e["args"]["MiB"]) for e in events(every, "C")
    }
    for form in (grouped, every):  # within one thread, events nest (never overlap)
        spans: dict = {}
        for e in events(form):
            spans.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
        for s in spans.values():
            assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(sorted(s)))


def test_messages_name_both_ends_and_collectives_their_bytes_per_rank(hybrid):
    grouped = events(hybrid.trace.to_chrome())
    sends = [e for e in grouped if e["args"].get("direction") == "send" and e["cat"] == "pp"]
    recvs = [e for e in grouped if e["args"].get("direction") == "recv" and e["cat"] == "pp"]
    assert sends and all(e["args"]["to devices"] == "4-7" for e in sends if e["pid"] == 0)
    assert recvs and all(e["args"]["from devices"] == "0-3" for e in recvs if e["pid"] == 4)
    tp = [e for e in grouped if e["cat"] == "tp"]
    assert tp and all(isinstance(e["args"]["bytes"], int | list) for e in tp)


def test_rows_of_smaller_groups_are_merged_and_say_whose_they_are():
    """Folded replicas' all-reduce: messages between single devices inside one process,
    written once per moment with every (sender, receiver) pair, none lost."""
    result = run(MLPConfig(4, 16), Strategy("ddp", dp=4), global_batch=8, steps=1)
    assert result.metrics["folded_replicas"] == 4
    grouped = events(result.trace.to_chrome())
    merged = {
        (a, b, e["ts"]) for e in grouped if "pairs" in e["args"] for a, b in e["args"]["pairs"]
    }
    every = events(result.trace.to_chrome(every_device=True))
    sent = {
        (e["pid"], e["args"]["peer"], e["ts"])
        for e in every
        if e["args"].get("direction") == "send"
    }
    assert merged and merged == sent
    assert len([e for e in grouped if "pairs" in e["args"]]) < len(sent)


def test_a_device_whose_memory_differs_keeps_its_own_counter():
    """A tensor-parallel group whose ranks hold different bytes (an embedding table of
    65 rows over two ranks is not split evenly) has one memory counter per rank."""
    model = GPTConfig(layers=1, hidden=8, heads=2, seq_len=4, vocab=65,
                      make_vocab_size_divisible_by=1)  # fmt: skip
    result = run(model, Strategy("tp", tp=2), global_batch=2, steps=1, numerics=False)
    counters = {e["name"] for e in events(result.trace.to_chrome(), "C")}
    if len({id(r) for r in result.run.memory.values()}) > 1:
        assert counters == {"memory (devices 0)", "memory (devices 1)"}
    else:
        assert counters == {"memory"}


def test_a_large_trace_is_compressed_and_the_same_run_gives_the_same_bytes(hybrid, tmp_path):
    path = tmp_path / "t.trace.json.gz"
    written = hybrid.trace.write_chrome(path)
    assert 0 < written <= chrome.count(hybrid.trace)  # merged rows count once
    with gzip.open(path, "rt") as f:
        assert json.load(f) == hybrid.trace.to_chrome()
    again = tmp_path / "u.trace.json.gz"
    hybrid.trace.write_chrome(again)
    assert path.read_bytes() == again.read_bytes()


def test_every_device_the_old_way(tmp_path):
    """``every_device`` lists each device's events as :attr:`Trace.events` does."""
    result = run(MLPConfig(4, 16), Strategy("p", pp=2, tp=1, microbatches=2),
                 cluster=preset("toy"), global_batch=4, steps=1)  # fmt: skip
    every = events(result.trace.to_chrome(every_device=True))
    assert sorted((e["pid"], e["ts"]) for e in every) == sorted(
        (e.device, e.start * 1e6) for e in result.trace.events
    )
