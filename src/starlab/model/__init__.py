"""Models built from genomes: the STAR backbone (and its flavours), the size/cache objectives read off it, and
its memory check."""

from starlab.model.autoencoder import AutoEncoder
from starlab.model.backbone import INITS, Backbone
from starlab.model.flavours import FLAVOURS, Flavour, get_flavour
from starlab.model.memory import (
    TRAINING_FACTOR,
    available_bytes,
    check_device,
    check_largest_model_fits,
    check_model_fits,
    check_spec_fits,
    estimate_model_bytes,
    estimate_spec_bytes,
    largest_model_bytes,
)
from starlab.model.sizes import SizeReport, measured_cache_bytes, size_report, training_flops_per_token
from starlab.model.slots import build_slots
from starlab.model.spec import BackboneSpec

__all__ = [
    "FLAVOURS",
    "INITS",
    "TRAINING_FACTOR",
    "AutoEncoder",
    "Backbone",
    "BackboneSpec",
    "Flavour",
    "SizeReport",
    "available_bytes",
    "build_slots",
    "check_device",
    "check_largest_model_fits",
    "check_model_fits",
    "check_spec_fits",
    "estimate_model_bytes",
    "estimate_spec_bytes",
    "get_flavour",
    "largest_model_bytes",
    "measured_cache_bytes",
    "size_report",
    "training_flops_per_token",
]
