"""Run dconn as `python -m declarative_conns`."""

from declarative_conns.cli import main

main()
