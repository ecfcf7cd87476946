"""Experiments as library objects: what a study asks for (its identity) and the analyses its reports print.

A study compares architectures, proxies or searches from stored raw results; everything a published table shows
is computed here from those results, so that one command rebuilds it. This room may import ``store``,
``assess``, ``genome`` and the rooms below them; only the CLI imports it.

``StudySpec`` reads a study file (TOML), ``run_study`` evaluates it durably into a run store, and
``study_tables`` computes its tables from that store.
"""

from starlab.study.identity import protocol_identity
from starlab.study.report import study_tables
from starlab.study.run import StudySummary, run_study
from starlab.study.spec import Analysis, StudySpec

__all__ = ["Analysis", "StudySpec", "StudySummary", "protocol_identity", "run_study", "study_tables"]
