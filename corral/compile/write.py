"""Write compiled files to disk: all or nothing, and without leaving stale files behind.

Each target folder is built complete in a temporary sibling, then swapped in. A folder corral did
not create (no ``.corral-rendered`` marker) is never replaced, so ``-o`` pointed at the wrong
place fails instead of deleting someone's files.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from corral.compile.output import Files

MARKER = ".corral-rendered"


class WriteError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Written:
    folder: str
    files: tuple[str, ...]
    objects: int


def _check_owned(target: Path) -> None:
    if target.exists() and any(target.iterdir()) and not (target / MARKER).exists():
        raise WriteError(
            f"{target} exists and was not written by corral render (no {MARKER}); "
            "refusing to replace it: choose an empty output folder"
        )


def write_all(out: Path, rendered: dict[str, Files]) -> list[Written]:
    """Write ``folder -> files`` under ``out``; checks every folder before touching any."""
    for folder in rendered:
        _check_owned(out / folder)
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for folder, files in rendered.items():
        result.append(_write_folder(out, folder, files))
    return result


def _write_folder(out: Path, folder: str, files: Files) -> Written:
    target = out / folder
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder}.", dir=out))
    try:
        objects = 0
        for rel, content in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content.render(), encoding="utf-8")
            objects += len(getattr(content, "objects", ()))
        (tmp / MARKER).write_text("written by `corral render`; the whole folder is replaced\n")
        if target.exists():
            old = out / f".{folder}.old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Written(folder, tuple(sorted(files)), objects)
