"""The web desk: the team's window onto the tickets, and each customer's status page.

``server`` serves it; ``site`` holds what every page shares; ``signin``, ``pages`` and
``customer`` are its three kinds of page; ``auth`` keeps agents' passwords; ``words``
its English and Dutch.
"""
