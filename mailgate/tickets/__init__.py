"""The ticket application: a mail understood, applied to the desk, and what moves do.

``prepare`` (the CPU work), ``mail`` (create, thread, hold, bounce), ``effects`` (status
moves and agents' plans, for the worker, the timers and the command line)."""
