"""The codec's hot modules compiled to C by mypyc, and the check that a compiled one is current.

``python -m proxy.codec.native`` (run by ``.ci/bootstrap`` and the image's build) compiles each
module of :data:`MODULES` from a copy of its source, ``proxy/codec/packstream.py`` becoming the
extension module ``proxy.codec.packstream_native``, built beside the source and ignored by git.
The copy is the source down to a marked line (what follows hands over to the compiled twin)
and carries the SHA-256 of the whole source it was made from. The source module stays the one
everybody imports and reads: at its end it asks :func:`load` for its compiled twin and, if there
is one built from exactly its text, hands over its public names to it. A compiled module left
from another version of the source is ignored, with a warning, so an edit takes effect at once
(slower, until the next build) and never runs old code by mistake. ``CYPHERGATE_NATIVE=0`` in
the environment keeps the Python code: to compare the two, or to rule the compiled one out.

The compiled code is the same text, type-checked by mypy and translated, so it behaves as the
Python code does (tests/codec/test_native.py compares the two on generated input, errors and
their offsets included); it decodes a statement's messages about three times as fast.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Final

log = logging.getLogger(__name__)

PACKAGE: Final = Path(__file__).resolve().parent
# The modules compiled: pure functions and data, no I/O, and of the project's modules they import
# only those of SHARED, which stay Python (their classes are the ones everybody uses).
MODULES: Final = ("packstream",)
SHARED: Final = ("errors",)
SUFFIX: Final = "_native"
DISABLE: Final = "CYPHERGATE_NATIVE"
# The line of a module's source below which nothing is compiled (the hand-over to the twin).
CUT: Final = "\n# ---- proxy.codec.native compiles the code above this line ----\n"


def source_digest(module: str) -> str:
    """The SHA-256 of ``module``'s source as it is now."""
    return hashlib.sha256((PACKAGE / f"{module}.py").read_bytes()).hexdigest()


def load(module: str) -> ModuleType | None:
    """The compiled twin of ``proxy.codec.<module>``, or ``None``: not built (or not for this
    Python), turned off by ``CYPHERGATE_NATIVE=0``, or built from another version of the source
    (said once in the log)."""
    if os.environ.get(DISABLE, "1") == "0":
        return None
    native = _compiled(module)
    if native is not None and not _made_from_source(native, module):
        log.warning(
            "proxy/codec/%s%s was not compiled from %s.py as it is now: the Python code "
            "runs instead (rebuild with `python -m proxy.codec.native`)",
            module,
            SUFFIX,
            module,
        )
        return None
    return native


def _compiled(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__package__}.{module}{SUFFIX}")
    except ImportError:
        return None


def current(module: str) -> bool:
    """Whether ``module``'s compiled twin is there and was built from its source as it is."""
    native = _compiled(module)
    return native is not None and _made_from_source(native, module)


def _made_from_source(native: ModuleType, module: str) -> bool:
    """Whether ``native`` was compiled from ``module``'s source as it is (an installation
    without the source cannot tell, so it says no)."""
    try:
        digest = source_digest(module)
    except OSError:
        return False
    return getattr(native, "SOURCE_SHA256", None) == digest


def built(module: str) -> Path | None:
    """The compiled extension of ``module`` in the package, if one is there."""
    found = sorted(PACKAGE.glob(f"{module}{SUFFIX}.*.so"))
    return found[0] if found else None


def build(module: str, python: str = sys.executable) -> Path:
    """Compile ``module`` with the mypyc of ``python`` (the same version of Python as this
    one) into the package; its path. (A compiled module once imported stays in its process:
    :func:`current` tells whether a build is needed, before.)"""
    digest = source_digest(module)
    with tempfile.TemporaryDirectory(prefix="cyphergate-mypyc-") as work:
        root = Path(work)
        package = root / "proxy" / "codec"
        package.mkdir(parents=True)
        (root / "proxy" / "__init__.py").touch()
        (package / "__init__.py").touch()
        for shared in SHARED:  # for mypyc's type check; not compiled
            shutil.copy2(PACKAGE / f"{shared}.py", package / f"{shared}.py")
        copy = package / f"{module}{SUFFIX}.py"
        text, marker, _ = (PACKAGE / f"{module}.py").read_text(encoding="utf-8").partition(CUT)
        if not marker:
            raise RuntimeError(f"proxy/codec/{module}.py has no line {CUT.strip()!r}")
        copy.write_text(f"{text}\nSOURCE_SHA256: Final = {digest!r}\n", encoding="utf-8")
        # mypyc builds with setuptools in the working directory: a scratch one, so the
        # project's own pyproject.toml plays no part.
        result = subprocess.run(  # noqa: S603 - an interpreter we were given, a path made here
            [python, "-m", "mypyc", str(copy.relative_to(root))],
            cwd=root,
            env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"mypyc could not compile proxy/codec/{module}.py (a C compiler and Python's "
                f"headers are needed):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        made = sorted(package.glob(f"{module}{SUFFIX}*.so"))
        if not made:
            raise RuntimeError(f"mypyc left no extension module for proxy/codec/{module}.py")
        for old in PACKAGE.glob(f"{module}{SUFFIX}*.so"):
            old.unlink()
        for extension in made:
            shutil.copy2(extension, PACKAGE / extension.name)
    importlib.invalidate_caches()
    path = built(module)
    if path is None:  # pragma: no cover - copied just above
        raise RuntimeError(f"the compiled proxy/codec/{module} is not where it was copied")
    return path


def main(arguments: list[str] | None = None) -> int:
    """Compile every module of :data:`MODULES` not compiled from its current source.
    ``--python PATH``: the interpreter whose mypyc compiles (by default this one), for an
    installation that keeps mypy elsewhere (the image's build)."""
    parser = argparse.ArgumentParser(prog="python -m proxy.codec.native")
    parser.add_argument("--python", default=sys.executable, help="the interpreter with mypyc")
    python = parser.parse_args(arguments).python
    for module in MODULES:
        existing = built(module)
        if existing is not None and current(module):
            print(f"proxy/codec/{module}.py (mypyc): compiled already ({existing.name})")
            continue
        try:
            path = build(module, python)
        except (RuntimeError, OSError) as exc:
            print(exc, file=sys.stderr)
            return 1
        if not current(module):
            print(f"proxy/codec/{path.name} does not load in this Python", file=sys.stderr)
            return 1
        print(f"proxy/codec/{module}.py (mypyc): compiled ({path.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
