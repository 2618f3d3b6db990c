from simulator.experiment import ScenarioResult, write_outputs
from simulator.nn.models import MLPConfig
from simulator.parallel import Strategy

from .conftest import run

PNG = b"\x89PNG\r\n\x1a\n"


def test_gantt_memory_and_compare_pictures_are_written(tmp_path):
    result = ScenarioResult(
        "pics",
        [
            run(MLPConfig(4, 16), Strategy("single")),
            run(MLPConfig(4, 16), Strategy("pipe", pp=4, microbatches=4, schedule="gpipe")),
        ],
    )
    written = write_outputs(result, tmp_path)
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(pngs) == 5
    for p in pngs:
        data = p.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000  # a real picture, not a blank one
