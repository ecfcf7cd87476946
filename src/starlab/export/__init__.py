"""Exported models: a genome of a run's Pareto front as a model anyone loads (``starlab.load``, or Hugging Face
``from_pretrained`` with ``format="hf"``). Its own room: it reads a run (store, kept weights), may train (assess,
train) and writes through ``starlab.model.serialization`` or ``starlab.hf``."""

from starlab.export.from_run import BYTE_VOCAB, EXPORT_FORMATS, export_from_run

__all__ = ["BYTE_VOCAB", "EXPORT_FORMATS", "export_from_run"]
