"""The ``farm`` command: parse, call ``farm`` (or ``workers`` for ``farm worker``), render. No logic here."""
