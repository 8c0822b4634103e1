"""Entry point for ``python -m mailgate``."""

from mailgate.cli import main

# Guarded: a worker process (``runners.processes``, started by ``spawn``) imports the main
# module of the daemon again, and must not run the command a second time.
if __name__ == "__main__":
    raise SystemExit(main())
