"""Leadership over ZooKeeper for pfxha: one active lease, fenced by an epoch.

Knows nothing about certificates.
"""

__all__: list[str] = []
