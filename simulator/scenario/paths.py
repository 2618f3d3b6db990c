"""Files in and out: safe output names, output folders checked up front, bounded input files.

Three things go wrong with files when the names and paths come from a user:

* a strategy name becomes a file name: ``"../x"``, ``".."``, a name of 300
  characters, or ``"CON"`` (reserved on Windows) would write outside the
  output folder or fail after the whole simulation has run.
  :func:`file_stem` escapes and shortens names so that every stem is a plain,
  short, portable file name, and different names keep different stems;
* ``--out`` names a file, or a place that cannot be written: :func:`prepare_output_dir`
  finds out before the simulation starts, so no run is lost;
* an input file is huge, not a regular file (``/dev/zero`` never ends), or
  not UTF-8: :func:`read_text` reads at most a bounded number of bytes of a
  regular file and decodes them strictly, with one-line errors.
"""

from __future__ import annotations

import hashlib
import stat
import tempfile
from pathlib import Path

from ..errors import OutputError, SimulatorError
from .limits import Limits

#: Characters a stem keeps as they are (portable on every common file system).
SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+-.")
#: Longest stem; longer ones are cut and end in ``~`` and a hash of the full name.
MAX_STEM = 80
#: Device names Windows reserves, with or without an extension.
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


def file_stem(name: str) -> str:
    """A file name for ``name`` that stays inside its folder on every file system.

    Characters outside ``A-Z a-z 0-9 _ + - .`` become ``%XX`` escapes of their
    UTF-8 bytes (``%`` itself becomes ``%25``), as in URLs (RFC 3986, sec.
    2.1), so different names keep different stems. A leading or trailing dot
    is escaped too: no stem is ``.``, ``..``, hidden, or loses a trailing dot
    on Windows; nor is it a name Windows reserves (``CON``, ``NUL``, ...).
    A stem longer than :data:`MAX_STEM` characters is cut and ends in ``~``
    (which no escaped stem contains) and 8 hex digits of the SHA-256 of the
    whole name, so it is short and still stable and distinct.
    The empty name becomes ``%`` (no other name does).

    >>> file_stem("tp2-pp2"), file_stem("a/b"), file_stem("..")
    ('tp2-pp2', 'a%2Fb', '%2E%2E')
    """
    if not name:
        return "%"
    out = "".join(c if c in SAFE else _escape(c) for c in name)
    if out.startswith("."):
        out = "%2E" + out[1:]
    if out.endswith("."):
        out = out[:-1] + "%2E"
    if out.split(".", 1)[0].upper() in _RESERVED:
        out = _escape(out[0]) + out[1:]
    if len(out) > MAX_STEM:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        out = out[: MAX_STEM - 9] + "~" + digest
    return out


def _escape(c: str) -> str:
    return "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))


def prepare_output_dir(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) and check that files can be written in it.

    Called before a simulation starts, so that a bad ``--out`` costs nothing.
    Raises :class:`~simulator.errors.OutputError` with one line naming the
    folder and the problem (a file in its place, no permission, a name too
    long, a read-only file system, ...).
    """
    p = Path(path)
    try:
        if p.exists() and not p.is_dir():
            raise OutputError(f"output folder {str(p)!r} is a file; choose another --out folder")
        p.mkdir(parents=True, exist_ok=True)
        # the only reliable test of "can write here" is writing (os.access ignores
        # read-only mounts and ACLs, and says yes to root)
        with tempfile.TemporaryFile(dir=p):
            pass
    except (FileExistsError, NotADirectoryError):
        raise OutputError(
            f"cannot create output folder {str(p)!r}: a part of the path is a file; "
            "choose another --out folder"
        ) from None
    except OSError as err:
        raise OutputError(
            f"cannot write to output folder {str(p)!r}: {err.strerror or err}; "
            "choose another --out folder"
        ) from None
    return p


def read_text(
    path: str | Path,
    what: str,
    limits: Limits | None = None,
    error: type[SimulatorError] = SimulatorError,
    table: bool = True,
) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limits.max_file_bytes`` long.

    ``what`` names the file in messages (``scenario file``, ``schedule
    file``); problems raise ``error`` (a :class:`SimulatorError` subclass),
    except a file over the size limit, which raises
    :class:`~simulator.errors.LimitError` (``table``: whether a ``[limits]``
    table can raise it, as it can for files a scenario names). Devices and pipes are refused
    before they are opened: reading ``/dev/zero`` would never end, and
    opening a pipe blocks until someone writes to it.
    """
    limits = limits or Limits()
    p = Path(path)
    try:
        info = p.stat()
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{what} {str(p)!r} is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {str(p)!r} is not a regular file (a device or a pipe?)")
        limits.check("max_file_bytes", info.st_size, f"the size of {what} {str(p)!r}", table=table)
        with open(p, "rb") as f:
            data = f.read(limits.max_file_bytes + 1)
    except FileNotFoundError:
        raise error(f"{what} {str(p)!r} does not exist") from None
    except OSError as err:
        raise error(f"cannot read {what} {str(p)!r}: {err.strerror or err}") from None
    # the file may have grown since stat()
    limits.check("max_file_bytes", len(data), f"the size of {what} {str(p)!r}", table=table)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(
            f"{what} {str(p)!r} is not UTF-8 text (byte 0x{data[err.start]:02x} at offset "
            f"{err.start}); save it as UTF-8"
        ) from None
