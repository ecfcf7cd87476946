"""Models built from genomes: the STAR backbone, the size/cache objectives read off it, and its memory check."""

from starlab.model.autoencoder import AutoEncoder
from starlab.model.backbone import Backbone
from starlab.model.memory import (
    TRAINING_FACTOR,
    available_bytes,
    check_device,
    check_largest_model_fits,
    check_model_fits,
    estimate_model_bytes,
    largest_model_bytes,
)
from starlab.model.objectives import SizeReport, measured_cache_bytes, size_report, training_flops_per_token
from starlab.model.slots import build_slots

__all__ = [
    "TRAINING_FACTOR",
    "AutoEncoder",
    "Backbone",
    "SizeReport",
    "available_bytes",
    "build_slots",
    "check_device",
    "check_largest_model_fits",
    "check_model_fits",
    "estimate_model_bytes",
    "largest_model_bytes",
    "measured_cache_bytes",
    "size_report",
    "training_flops_per_token",
]
