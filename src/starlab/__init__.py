"""starlab: an open implementation of STAR (Synthesis of Tailored Architectures)."""

__version__ = "0.1.0"
