"""The pfxha connector agent: the PFX flow, issuing-CA clients, metrics and the CLI.

Depends on :mod:`election`; never on :mod:`chaos`.
"""

from connector._version import __version__

__all__ = ["__version__"]
