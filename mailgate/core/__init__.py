"""The pure core of mailgate: decisions from facts, with no I/O, no clock and no database."""
