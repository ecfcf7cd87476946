"""Experiments as library objects: what a study asks for (its identity) and the analyses its reports print.

A study compares architectures, proxies or searches from stored raw results; everything a published table shows
is computed here from those results, so that one command rebuilds it. This room may import ``store``,
``assess``, ``genome`` and the rooms below them; only the CLI imports it.
"""

from starlab.study.identity import protocol_identity

__all__ = ["protocol_identity"]
