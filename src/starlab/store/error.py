"""The one error of the store room: a run directory that cannot be used. A module of its own because both
the store file (``sqlite``) and the run lock (``lock``) raise it, and the store asks the lock whether a search
is running."""

from __future__ import annotations

from starlab.errors import SettingError


class StoreError(SettingError):
    """A run directory that cannot be used (missing, corrupt, or holding another run)."""
