"""Durable run storage: one SQLite file per run directory."""

from starlab.store.sqlite import STORE_FILE, Evaluation, RunStore, StoreError

__all__ = ["STORE_FILE", "Evaluation", "RunStore", "StoreError"]
