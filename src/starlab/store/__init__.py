"""Durable run storage: one SQLite file per run directory, and a run read back as data."""

from starlab.store.lock import RunLock
from starlab.store.run import RunData, load_run
from starlab.store.sqlite import STORE_FILE, Generation, RunStore, StoreError

__all__ = ["STORE_FILE", "Generation", "RunData", "RunLock", "RunStore", "StoreError", "load_run"]
