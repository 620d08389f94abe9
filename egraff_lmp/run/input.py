"""Reading a LAMMPS input into logical commands (what ``egraff-lmp run`` executes one by one).

Continuation lines (``&``) are joined and comments (``#`` outside quotes) dropped, as LAMMPS
does. Loops (``jump``/``label``/``next``) need LAMMPS to read the file itself, so they are
refused with a clear message; ``include`` files run as a whole inside LAMMPS.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import located

LOOP_COMMANDS = {"jump", "label", "next"}


def _strip_comment(line: str) -> str:
    quote = None
    for k, ch in enumerate(line):
        if ch in "\"'" and quote in (None, ch):
            quote = None if quote == ch else ch
        elif ch == "#" and quote is None:
            return line[:k]
    return line


def logical_commands(path) -> list[tuple[int, str]]:
    """(line number, command) pairs of a LAMMPS input file."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise located(path, f"cannot read the LAMMPS input ({exc.strerror})") from None
    out, buf, start = [], "", None
    for n, raw in enumerate(lines, 1):
        line = _strip_comment(raw).rstrip()
        if start is None:
            start = n
        if line.endswith("&"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf, start = "", None
    if buf.strip():
        out.append((start, buf.strip()))
    for n, cmd in out:
        if cmd.split()[0] in LOOP_COMMANDS:
            raise located(path, f"line {n}: '{cmd.split()[0]}' loops are not supported by "
                                "egraff-lmp run (it runs the input command by command); "
                                "unroll the loop or run the input with lmp directly")
    return out


def run_steps(cmd: str) -> int | None:
    """N for a plain ``run N`` (no keywords), else None."""
    m = re.fullmatch(r"run\s+(\d+)", cmd.strip())
    return int(m.group(1)) if m else None
