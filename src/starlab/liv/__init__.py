"""LIV operators: the pool of 17 classes, operator genomes composed from parts, their layers (parallel and
recurrent forms) and the pure ops."""

from starlab.liv.base import LIV, State, meta_device, state_nbytes
from starlab.liv.build import KINDS, build_featurizer, build_liv, check_width
from starlab.liv.config import LIVConfig
from starlab.liv.operator import ClassKey, class_key, format_key, get_class, valid_operator_genomes
from starlab.liv.pool import LIVClass, class_ids, classes, register
from starlab.liv.size import LIVSize, liv_size, liv_sizes

__all__ = [
    "KINDS",
    "LIV",
    "ClassKey",
    "LIVClass",
    "LIVConfig",
    "LIVSize",
    "State",
    "build_featurizer",
    "build_liv",
    "check_width",
    "class_ids",
    "class_key",
    "classes",
    "format_key",
    "get_class",
    "liv_size",
    "liv_sizes",
    "meta_device",
    "register",
    "state_nbytes",
    "valid_operator_genomes",
]
