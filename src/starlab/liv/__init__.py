"""LIV operators: the pool of 17 classes, their layers (parallel and recurrent forms) and the pure ops."""

from starlab.liv.base import LIV, State, meta_device, state_nbytes
from starlab.liv.build import KINDS, build_featurizer, build_liv, check_width
from starlab.liv.config import LIVConfig
from starlab.liv.pool import LIVClass, class_ids, classes, get_class, register

__all__ = [
    "KINDS",
    "LIV",
    "LIVClass",
    "LIVConfig",
    "State",
    "build_featurizer",
    "build_liv",
    "check_width",
    "class_ids",
    "classes",
    "get_class",
    "meta_device",
    "register",
    "state_nbytes",
]
