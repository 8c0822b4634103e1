"""Entry point for ``python -m mailgate``."""

from mailgate.cli import main

raise SystemExit(main())
