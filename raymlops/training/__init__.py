"""The training layer: the per-worker loop (setup, epochs, checkpoints, finish), its Session, and checkpoint I/O.

Knows torch, the data and models layers, and tracking; nothing here decides how many workers run
or where: launch does.
"""
