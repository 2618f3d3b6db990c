"""Everything the package says it exports is there."""

import simulator


def test_every_exported_name_exists():
    missing = [name for name in simulator.__all__ if not hasattr(simulator, name)]
    assert not missing


def test_describe_mesh_names_the_links_of_every_group():
    lines = simulator.describe_mesh(
        simulator.Mesh(dp=2, tp=4, pp=2), simulator.preset("dgx-a100", nodes=2)
    )
    assert "  devices [0, 1, 2, 3]: inside node 0" in lines
    assert "  devices [0, 8]: across nodes 0, 1 (network links)" in lines


def test_import_and_help_load_no_pictures_tables_or_planner():
    """``import simulator`` loads none of its parts, and ``python -m simulator --help``
    none of matplotlib, pandas, Dask or the planner: a name is imported when used."""
    import subprocess
    import sys

    heavy = ("matplotlib", "pandas", "dask", "simulator.planner", "simulator.runtime")
    child = (
        "import sys, contextlib, io\n"
        "import simulator\n"
        "print(sorted(m for m in sys.modules if m.startswith('simulator.')))\n"
        "from simulator.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['--help'])\n"
        f"print([m for m in {heavy!r} if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    after_import, after_help = out.stdout.splitlines()
    assert after_import == "['simulator.errors']"
    assert after_help == "[]"
