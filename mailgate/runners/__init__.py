"""The daemon's loops: the worker, the sender, the timers and retention.

Each claims what is due, hands it over and finishes: the worker from spool to tickets,
the sender from outbox to the world."""
