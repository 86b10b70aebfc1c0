"""Run dconn as `python -m declarative_conns`."""

from .cli import main

main()
