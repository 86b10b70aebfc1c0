"""Run dconn as `python -m declarative_conns`."""

from declarative_conns.console import main

main()
