"""Virtualenvs for the reference servers that cannot share Snorky's interpreter.

Each environment ``NAME`` is described by ``envs/NAME.txt`` (pip requirements, pinned)
and made on first use in ``benchmarks/.venvs/NAME`` (ignored by git), so that the suite
stays one command on a fresh machine. ``envs/NAME.python`` may name the interpreter
versions the environment accepts, newest first (``3.9 3.8 3.7``: Snorky 0.1 needs
Tornado 4.5, which predates Python 3.10); without it the suite's own Python is used.

Usage: python benchmarks/envs.py NAME      # make it if needed, print its python
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE / "envs"
ROOT = HERE / ".venvs"


class EnvUnavailable(Exception):
    """No interpreter fits the environment, or its packages failed to install."""


def find_python(versions: list[str]) -> str:
    """The first interpreter found for ``versions``: pyenv's installed versions, then
    ``pythonX.Y`` on PATH (not pyenv's shims, which fail for versions that are not active)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in versions:
        for candidate in sorted(pyenv.glob(f"{version}.*"), reverse=True):
            binary = candidate / "bin" / "python"
            if binary.exists():
                return str(binary)
        path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if "/shims" not in p)
        found = shutil.which(f"python{version}", path=path)
        if found:
            return found
    raise EnvUnavailable(f"no Python {' or '.join(versions)} on PATH or under {pyenv}")


def ensure(name: str) -> str:
    """Make environment ``name`` if missing or out of date; return its interpreter's path."""
    requirements = SPECS / f"{name}.txt"
    if not requirements.exists():
        raise EnvUnavailable(f"no such environment: {requirements}")
    wanted = SPECS / f"{name}.python"
    base = find_python(wanted.read_text().split()) if wanted.exists() else sys.executable
    digest = hashlib.sha256(requirements.read_bytes() + base.encode()).hexdigest()[:16]
    target = ROOT / name
    python = target / "bin" / "python"
    stamp = target / ".snorky-bench"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return str(python)
    shutil.rmtree(target, ignore_errors=True)
    print(f"envs: making {target} with {base} ({requirements.name})", file=sys.stderr)
    steps = [
        [base, "-m", "venv", str(target)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise EnvUnavailable(f"{' '.join(step)} failed:\n{done.stdout}{done.stderr}")
    stamp.write_text(digest)
    return str(python)


if __name__ == "__main__":
    print(ensure(sys.argv[1]))
