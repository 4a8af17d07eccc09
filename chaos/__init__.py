"""The pfxha lab and drills: launchers, the stand-in cloud service, faults,
history, checkers and reports. Depends on :mod:`connector` and :mod:`election`.
"""

__all__: list[str] = []
