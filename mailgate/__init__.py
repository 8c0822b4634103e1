"""mailgate: an email ticket gateway that turns mail into threaded support tickets."""

__version__ = "0.1.0"
