"""`python -m raymlops.server start|stop|status`: the shared tracking server (see processes.py)."""

from raymlops.server.processes import main

main()
