"""Models built from genomes: the STAR backbone and the size/cache objectives read off it."""

from starlab.model.autoencoder import AutoEncoder
from starlab.model.backbone import Backbone, build_slots
from starlab.model.objectives import SizeReport, measured_cache_bytes, size_report

__all__ = ["AutoEncoder", "Backbone", "SizeReport", "build_slots", "measured_cache_bytes", "size_report"]
