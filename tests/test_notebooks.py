"""The notebooks run top to bottom, draw real pictures, and use only the public API.

Each notebook is executed with nbclient in a fresh ``python3`` kernel whose
working directory is a temporary directory, so whatever it writes (pictures,
traces, schedule files under ``out/``) stays out of the repository. The kernel
imports ``simulator`` from this checkout (``PYTHONPATH``), which a last,
added cell checks. ``SIMULATOR_NOTEBOOK_QUICK=1`` asks the notebooks that have a quick
mode (the capstone's planner search) for their narrow, cheap version; the committed
outputs come from the full one.
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import matplotlib.image as mpimg
import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 120
MIN_PNG_BYTES = 10_000  # an empty set of axes with a title and a grid is about 11 kB ...
MIN_COLOURED = 0.005  # ... and has no coloured pixels; every real picture here has > 1 %
# notebook 3 shows Megatron's column- and row-parallel layers shard by shard, which only
# simulator.parallel.tensor (shard_block) exposes; notebook 2 times collectives nccl-tests
# style with simulator.experiment.collective
PUBLIC_MODULES = {
    "simulator",
    "simulator.experiment.collective",
    "simulator.comm",
    "simulator.viz.plots",
    "simulator.ops",
    "simulator.parallel.tensor",
}
WHICH_SIMULATOR = (
    "import pathlib, simulator\nprint(pathlib.Path(simulator.__file__).resolve().parent)"
)


def start_kernel(client: NotebookClient, env: dict[str, str], home: Path) -> None:
    """Start ``client``'s kernel and wait until it answers. The kernel talks over Unix
    sockets under ``home`` (ZeroMQ's ``ipc`` transport), not TCP ports, which another
    process could take between the moment jupyter_client finds a port free and the
    moment the kernel binds it."""
    client.km = client.create_kernel_manager()
    if os.name == "posix":
        client.km.transport = "ipc"
        client.km.ip = str(home / "kernel")
    try:
        client.start_new_kernel(env=env)
        client.start_new_kernel_client()
    except BaseException:
        if client.km.has_kernel:
            client.km.shutdown_kernel(now=True)
        raise


def pngs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [
        base64.b64decode(out["data"]["image/png"])
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]


def coloured_fraction(png: bytes) -> float:
    """Share of pixels that are clearly coloured (not white, grey or black)."""
    rgb = mpimg.imread(io.BytesIO(png), format="png")[..., :3]
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 0.25).mean())


LESSONS = (
    "01_virtual_devices",
    "02_data_parallel",
    "03_model_parallel",
    "04_pipeline_bubbles",
    "05_hybrid_3d",
    "06_memory_and_recomputation",
    "07_long_context_and_experts",
    "08_capstone_llama3_70b",
)
#: metric names the results no longer have: a notebook that used them would be stale
RETIRED = ("comm_only_s", "idle_s", '"comm_s"', "'comm_s'")


def test_there_are_notebooks():
    assert [p.stem for p in NOTEBOOKS] == list(LESSONS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_uses_the_current_metrics(path):
    """The step splits into compute, exposed communication and bubble; nothing else."""
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells)
    assert not [name for name in RETIRED if name in source], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_draws(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(WHICH_SIMULATOR))
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "SIMULATOR_NOTEBOOK_QUICK": "1"}
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    start_kernel(client, env, tmp_path)
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error

    assert nb.cells[-1].outputs[0]["text"].strip() == str(ROOT / "simulator")
    images = pngs(nb)
    assert images, f"{path.name} shows no picture"
    for i, png in enumerate(images):
        assert len(png) >= MIN_PNG_BYTES, f"{path.name}: picture {i} is only {len(png)} bytes"
        assert coloured_fraction(png) >= MIN_COLOURED, f"{path.name}: picture {i} looks empty"
    texts = [
        out.get("data", {}).get("text/plain", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    ]
    assert not [t for t in texts if "with 0 Axes" in t], f"{path.name} draws an empty figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed(path):
    """The notebooks read without running: every code cell carries its outputs."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name} is not executed"
    assert pngs(nb), f"{path.name} is committed without its pictures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_only_the_public_api(path):
    nb = nbformat.read(path, as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    imported = set(re.findall(r"^\s*(?:from|import)\s+(simulator[\w.]*)", source, re.MULTILINE))
    private = {
        m for m in imported if m not in PUBLIC_MODULES and not m.startswith("simulator.comm.")
    }
    assert not private, f"{path.name} imports non-public modules: {sorted(private)}"
