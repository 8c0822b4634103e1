"""Shared by the benchmarks: the words generated mails are made of."""

WORDS = [
    *("printer", "factuur", "inloggen", "rooster", "export"),
    *("koppeling", "wachtwoord", "rapport", "agenda"),
]
