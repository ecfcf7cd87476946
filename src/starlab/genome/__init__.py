"""Genomes: the numerical, hierarchical description of a backbone, its forms, repair and presets."""

from starlab.genome.backbone_genes import BACKBONE_GENE_RANGES, BackboneGenes
from starlab.genome.genome import FIELDS, MAX_SLOTS, Genome, Slot, gene_ranges, random_genome
from starlab.genome.presets import PRESETS, preset, resolve

__all__ = [
    "BACKBONE_GENE_RANGES",
    "FIELDS",
    "MAX_SLOTS",
    "PRESETS",
    "BackboneGenes",
    "Genome",
    "Slot",
    "gene_ranges",
    "preset",
    "random_genome",
    "resolve",
]
