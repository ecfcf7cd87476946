"""Durable run storage: one SQLite file per run directory, and a run read back as data."""

from starlab.store.lock import RunLock
from starlab.store.run import RunData, check_config_keys, check_stored_config, load_run
from starlab.store.settings import SEARCH_SETTINGS
from starlab.store.sqlite import STORE_FILE, Generation, RunStore, StoreError

__all__ = [
    "SEARCH_SETTINGS",
    "STORE_FILE",
    "Generation",
    "RunData",
    "RunLock",
    "RunStore",
    "StoreError",
    "check_config_keys",
    "check_stored_config",
    "load_run",
]
