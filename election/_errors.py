"""The election's exception tree: everything it raises is an :class:`ElectionError`."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ElectionError",
    "NotAuthorizedError",
    "RotationError",
    "SwitchoverError",
]


class ElectionError(Exception):
    """Base of every error the election package raises on purpose."""


class ConfigError(ElectionError, ValueError):
    """A setting breaks a rule; ``setting`` names it and the message states the rule."""

    def __init__(self, setting: str, value: object, rule: str) -> None:
        self.setting = setting
        self.value = value
        self.rule = rule
        super().__init__(f"{setting}={value!r}: {rule}")


class NotAuthorizedError(ElectionError):
    """ZooKeeper refused a write under /pfxha/<cluster> (NoAuth): wrong or missing credentials."""


class SwitchoverError(ElectionError):
    """A switchover request was refused (unknown or ineligible target, no leader)."""


class RotationError(ElectionError):
    """A password rotation step was refused: finishing would lock a member out."""
