import pytest

from simulator.engine.memory import MemoryLedger
from simulator.errors import OutOfMemoryError
from simulator.hardware.units import format_bytes


def ledger(capacity=1000):
    return MemoryLedger(3, capacity, lambda: 0.0)


def test_allocate_free_current_and_peak_by_category():
    m = ledger()
    m.allocate("parameters", 100)
    m.allocate("activations/mb0", 300)
    m.allocate("activations/mb1", 300)
    m.free("activations/mb0")
    assert (m.current, m.peak) == (400, 700)
    assert m.breakdown()["activations_peak"] == 600
    assert m.peak_breakdown["activations"] == 600
    m.check()


def test_overflow_names_device_request_and_breakdown():
    m = ledger()
    m.allocate("parameters", 600)
    m.allocate("optimizer", 700)
    with pytest.raises(OutOfMemoryError) as err:
        m.check()
    assert err.value.device == 3 and err.value.request == ("optimizer", 700)
    assert err.value.breakdown["parameters"] == 600
    assert "device 3 is out of memory" in str(err.value) and "optimizer" in str(err.value)


def test_freeing_more_than_held_is_a_bug():
    m = ledger()
    m.allocate("gradients", 10)
    with pytest.raises(ValueError):
        m.free("gradients", 11)
    with pytest.raises(ValueError):
        m.allocate("cache", 1)


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.50 KiB"
    assert format_bytes(80 * 2**30) == "80.00 GiB"


def test_a_frozen_ledger_reads_the_same_and_cannot_change():
    clock = iter([0.0, 1.0, 2.0, 2.0])
    m = MemoryLedger((3, 4), 1000, lambda: next(clock))
    m.allocate("parameters", 100)
    m.allocate("activations/mb0", 300)
    m.free("activations/mb0")
    frozen = m.frozen()
    assert frozen.devices == (3, 4) and frozen.capacity == 1000 and frozen.peak == 400
    assert frozen.breakdown() == m.breakdown() and dict(frozen.peak_breakdown) == m.peak_breakdown
    assert frozen.samples == m.samples == [(0.0, 100), (1.0, 400), (2.0, 100)]
    m.allocate("buffers", 50)  # the ledger goes on; the record does not
    assert frozen.peak == 400 and len(frozen.times) == 3
    with pytest.raises(ValueError, match="read-only"):
        frozen.deltas[0] = 0
    with pytest.raises(TypeError):
        frozen.peak_breakdown["parameters"] = 0  # type: ignore[index]
