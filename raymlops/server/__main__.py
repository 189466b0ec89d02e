"""`python -m raymlops.server ...`: the shared tracking server's command line (see cli.py)."""

from raymlops.server.cli import main

main()
