"""The `dconn` console script: `dconn --version` answers without loading the command line.

Everything else runs `declarative_conns.cli.main`, which imports typer, the commands and what
they use; the version alone needs none of it.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the dconn command line (`dconn --version` alone is answered here)."""
    if sys.argv[1:] == ["--version"]:
        from declarative_conns import __version__

        sys.stdout.write(f"dconn {__version__}\n")
        return
    from declarative_conns.cli import main as run

    run()
