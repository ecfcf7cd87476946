"""starlab: an open implementation of STAR (Synthesis of Tailored Architectures)."""

from starlab import runtime

__version__ = "0.1.0"

# before anything imports torch: OpenMP threads that wait spin briefly, then sleep (runtime.spin_briefly)
runtime.spin_briefly()


def load(directory, device: str = "cpu"):
    """Load a model written by ``starlab export`` (see :func:`starlab.model.serialization.load`)."""
    from starlab.model.serialization import load as load_checkpoint

    return load_checkpoint(directory, device)
