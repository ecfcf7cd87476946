"""Will a model fit? Its memory, counted exactly before anything is allocated.

``Backbone(genome, width=200000, vocab_size=...)`` would otherwise ask the allocator for terabytes and fail
deep inside torch (or swap the machine to death). Every real (non-meta) backbone build checks first, so the
CLI commands, export, ``starlab.load`` and a search all end with one line instead::

    a width-200000 model of 11111-91111 (vocab 64) would need 1.9 TB for its 4.8e11 float32 parameters;
    this machine has 24 GB available (width and vocab_size set the size; its slots are most of it, they grow
    with width squared)

Sizes are exact: the genome's slots are built on PyTorch's ``meta`` device (shapes, no storage) and the
embeddings, head and norms around them are counted from their shapes. A cheaper bound comes first: each slot
at most as large as its class built alone (sharing only removes parameters), with the per-class sizes at a
width cached, so the check of a model that clearly fits costs microseconds.

What is counted: unique parameters (shared ones once) and the LIVs' buffers, at the default dtype. With
``training=True`` the parameters count :data:`TRAINING_FACTOR` times. Activations are not counted: they depend
on batch size and sequence length, which the model does not know.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from starlab.errors import one_line, show
from starlab.genome import Genome
from starlab.liv import (
    ClassKey,
    LIVConfig,
    build_liv,
    class_ids,
    class_key,
    meta_device,
    valid_operator_genomes,
)
from starlab.liv.build import TooLarge
from starlab.model.blocks import norm_params
from starlab.model.slots import build_slots
from starlab.model.spec import BackboneSpec, check_settings

#: bytes per parameter in training, in units of the parameter itself: the weight, its gradient and AdamW's
#: two moments (``exp_avg``, ``exp_avg_sq``), all in the parameter's dtype. Activations come on top.
TRAINING_FACTOR = 4
#: below this many bytes a model is not checked against the machine (reading the available memory costs
#: more than building such a model; the check is for sizes that cannot fit, not for a machine already full)
SMALL_MODEL_BYTES = 64 * 2**20
#: exceptions torch raises for shapes beyond 64-bit sizes (or floats beyond integers) while sizing on meta
_OVERFLOW = (RuntimeError, TypeError, OverflowError, TooLarge)


class Size(NamedTuple):
    """A model's parameters (unique), their bytes, and the bytes of its buffers."""

    params: int
    param_bytes: int
    buffer_bytes: int
    dtype: torch.dtype

    def bytes(self, training: bool = False) -> int:
        return self.param_bytes * (TRAINING_FACTOR if training else 1) + self.buffer_bytes


# ---- what the machine has -------------------------------------------------------------------------------
def available_bytes(device: str | torch.device = "cpu") -> int:
    """Memory a new model can take on ``device``.

    cpu: ``MemAvailable`` of ``/proc/meminfo`` (free plus reclaimable page cache; ``SC_AVPHYS_PAGES`` where
    there is no ``/proc``), capped by the cgroup's limit less its usage when the process runs in a
    memory-limited container. cuda: free device memory plus what PyTorch's caching allocator holds unused.
    mps: the recommended working set less what the driver holds. Raises ``ValueError`` where it cannot tell.
    """
    known = _known_available(_device(device))
    if known is None:
        raise ValueError(f"cannot tell how much memory device {device} has available (cpu, cuda and mps are known)")
    return known


def _device(device: Any) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {show(device)}") from None


def check_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device`` that can hold weights here, or a one-line ``ValueError`` (an unknown
    name, ``meta``, ``cpu:N`` for N > 0, a CUDA or MPS device this machine has not got)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {show(device)}") from None
    if device.type == "meta":
        raise ValueError("device must hold the weights ('cpu', 'cuda', ...), got 'meta'")
    if device.type == "cpu" and device.index not in (None, 0):  # torch accepts 'cpu:99' and ignores the index
        raise ValueError(f"device {str(device)!r} does not exist: the CPU is the one device 'cpu'")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} is not available (torch.cuda.is_available() is False)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} is not available ({torch.cuda.device_count()} cuda devices)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' is not available (torch.backends.mps.is_available() is False)")
    return device


def _known_available(device: torch.device) -> int | None:
    if device.type == "cpu":
        return _cpu_available()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        try:
            free, _ = torch.cuda.mem_get_info(device)
            return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        except (RuntimeError, AssertionError, ValueError):  # no such device index: torch says so when it builds
            return None
    if device.type == "mps" and torch.backends.mps.is_available():
        return max(0, torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    return None


def _cpu_available() -> int | None:
    system = _meminfo_available()
    if system is None:
        try:
            system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name (macOS)
            system = None
    known = [value for value in (system, _cgroup_available()) if value is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Limit less usage (page cache that can be dropped counts as free) of cgroup v2, else v1; None: no limit."""
    for limit_file, usage_file, stat_file, cache_key in (
        ("memory.max", "memory.current", "memory.stat", "inactive_file"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat", "total_inactive_file"),
    ):
        root = Path("/sys/fs/cgroup")
        try:
            limit_text = (root / limit_file).read_text().strip()
            if limit_text == "max" or int(limit_text) >= 2**60:
                return None
            usage = int((root / usage_file).read_text().strip())
            cache = 0
            for line in (root / stat_file).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == cache_key:
                    cache = int(value)
            return max(0, int(limit_text) - max(0, usage - cache))
        except (OSError, ValueError):
            continue
    return None


# ---- what a model needs ----------------------------------------------------------------------------------
def estimate_model_bytes(
    genome: Genome,
    width: int,
    vocab_size: int,
    config: LIVConfig | None = None,
    *,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
    training: bool = False,
) -> int:
    """Exact bytes of ``Backbone(genome, width, vocab_size, config, ...)`` (parameters once, buffers),
    times :data:`TRAINING_FACTOR` for the parameters with ``training``; nothing is allocated."""
    spec = BackboneSpec(genome, width, vocab_size, config, tie_embeddings, max_positions)
    return estimate_spec_bytes(spec, training=training)


def estimate_spec_bytes(spec: BackboneSpec, *, training: bool = False) -> int:
    """:func:`estimate_model_bytes` of the backbone ``spec`` describes."""
    try:
        return _exact(spec).bytes(training)
    except _OVERFLOW as error:
        raise ValueError(_unsized(spec, error)) from None


def largest_model_bytes(
    depth: int,
    width: int,
    vocab_size: int,
    config: LIVConfig | None = None,
    *,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
    training: bool = False,
) -> int:
    """An upper bound on the bytes of any genome of ``depth`` slots at ``width``: every slot the largest class
    (built alone: sharing only removes parameters), plus the embeddings, head and norms. For a search to check
    its largest candidate before it starts."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    width, vocab_size, config, tie_embeddings, max_positions = check_settings(
        width, vocab_size, config, tie_embeddings, max_positions
    )
    try:
        per_class = _class_sizes(width, config, torch.get_default_dtype())
    except _OVERFLOW as error:
        raise ValueError(f"a depth-{depth} model at width {width} cannot be sized: {one_line(error)}") from None
    slot = max(per_class.values(), key=lambda size: size.bytes(training))
    # embeddings and norms (at most the slots' and a final one, LayerNorm's gain and bias)
    rows = vocab_size * (1 if tie_embeddings else 2) + (max_positions or 0) + 2 * (depth + 1)
    return _outer_size(rows * width).bytes(training) + depth * slot.bytes(training)


def check_model_fits(
    genome: Genome,
    width: int,
    vocab_size: int,
    device: str | torch.device = "cpu",
    config: LIVConfig | None = None,
    *,
    training: bool = False,
    available: int | None = None,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
) -> None:
    """Raise a one-line ``ValueError`` when the backbone would not fit in ``available`` bytes (default: what
    ``device`` has now, see :func:`available_bytes`; a device whose memory cannot be told is not checked, nor
    is a model under :data:`SMALL_MODEL_BYTES` against the device's memory).

    The message: ``a width-W model of GENOME (vocab V) would need N GB for its P float32 parameters; this
    machine has M GB available (width and vocab_size set the size; its embeddings are most of it)`` (or ``its
    slots are most of it, they grow with width squared``; ``to train its`` ... ``(weights, gradients and two
    AdamW moments)`` with ``training``; ``cuda:0 has M GB free`` on a GPU).
    """
    spec = BackboneSpec(genome, width, vocab_size, config, tie_embeddings, max_positions)
    check_spec_fits(spec, device, training=training, available=available)


def check_spec_fits(
    spec: BackboneSpec, device: str | torch.device = "cpu", *, training: bool = False, available: int | None = None
) -> None:
    """:func:`check_model_fits` for the backbone ``spec`` describes (its settings are checked already)."""
    device = _device(device)
    try:  # the cached bound: microseconds, and exact unless the genome shares
        bound = _upper(spec).bytes(training)
    except _OVERFLOW:
        bound = None
    if available is None:
        if bound is not None and bound <= SMALL_MODEL_BYTES:
            return
        available = _known_available(device)
        if available is None:
            return
    if bound is not None and bound <= available:
        return
    try:
        size = _exact(spec)
    except _OVERFLOW as error:  # shapes beyond 64 bits: the embeddings alone say how far beyond
        outer = _outer(spec)
        if outer.bytes(training) > available:
            raise ValueError(_too_large(spec, outer, training, available, device, at_least=True)) from None
        raise ValueError(_unsized(spec, error)) from None
    if size.bytes(training) > available:
        raise ValueError(_too_large(spec, size, training, available, device))


def check_largest_model_fits(
    depth: int,
    width: int,
    vocab_size: int,
    device: str | torch.device = "cpu",
    config: LIVConfig | None = None,
    *,
    training: bool = False,
    available: int | None = None,
    tie_embeddings: bool = True,
    max_positions: int | None = None,
) -> None:
    """:func:`check_model_fits` for the bound of :func:`largest_model_bytes`: raises ``the largest depth-D
    genome at width W (vocab V) could need up to N GB ...; this machine has M GB available ...``."""
    need = largest_model_bytes(
        depth, width, vocab_size, config, tie_embeddings=tie_embeddings, max_positions=max_positions, training=training
    )
    device = _device(device)
    if available is None:
        available = _known_available(device)
        if available is None:
            return
    if need > available:
        purpose = "to train" if training else "for its weights"
        raise ValueError(
            f"the largest depth-{depth} genome at width {width} (vocab {vocab_size}) could need up to "
            f"{format_bytes(need)} {purpose}; {_where(device)} {format_bytes(available)} "
            f"{'free' if device.type != 'cpu' else 'available'} (depth, width and vocab_size set the size)"
        )


def format_bytes(n: int) -> str:
    """Decimal units: ``512 B``, ``1.2 TB``, ``22 GB``."""
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    exponent = 0
    while exponent + 1 < len(units) and n >= 1000 ** (exponent + 1):
        exponent += 1
    if n >= 1000 ** len(units):
        return f"{format_count(n)} B"
    value = n / 1000**exponent
    return f"{value:.1f} {units[exponent]}" if exponent and value < 9.95 else f"{value:.0f} {units[exponent]}"


def format_count(n: int) -> str:
    """``12,345`` below a million, ``3.1e11`` above (exact digits count for integers beyond floats)."""
    if n < 1_000_000:
        return f"{n:,}"
    if n.bit_length() > 1000:  # beyond floats: the order of magnitude
        return f"~1e{int((n.bit_length() - 1) * math.log10(2))}"
    mantissa, exponent = f"{n:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


# ---- internals ---------------------------------------------------------------------------------------------
def _outer(spec: BackboneSpec) -> Size:
    """The backbone's own parameters around the LIVs: embedding, untied head, positions, the norms."""
    genome = spec.genome
    return _outer_size(spec.embedding_params() + norm_params(genome.backbone, len(genome), spec.width))


def _outer_size(params: int) -> Size:
    dtype = torch.get_default_dtype()
    return Size(params, params * dtype.itemsize, 0, dtype)


def _measure(modules) -> Size:
    params = {id(p): p for m in modules for p in m.parameters()}
    buffers = {id(b): b for m in modules for b in m.buffers()}
    count = sum(p.numel() for p in params.values())
    param_bytes = sum(p.numel() * p.element_size() for p in params.values())
    buffer_bytes = sum(b.numel() * b.element_size() for b in buffers.values())
    return Size(count, param_bytes, buffer_bytes, torch.get_default_dtype())


def _add(*sizes: Size) -> Size:
    return Size(*(sum(values) for values in list(zip(*sizes, strict=True))[:3]), sizes[0].dtype)


def _exact(spec: BackboneSpec) -> Size:
    with meta_device():
        livs = build_slots(spec.genome, spec.width, spec.config)
    return _add(_outer(spec), _measure(livs))


def _upper(spec: BackboneSpec) -> Size:
    per_class = _class_sizes(spec.width, spec.config, torch.get_default_dtype())
    return _add(_outer(spec), *(per_class[slot.cls] for slot in spec.genome.slots))


@functools.lru_cache(maxsize=32)
def _class_sizes(width: int, config: LIVConfig, dtype: torch.dtype) -> dict[ClassKey, Size]:
    """Each class (the pool's and every other valid operator genome) built alone at ``width`` (its own
    featurizer, cached side included), on meta."""
    keys = {class_key(genes) for genes in valid_operator_genomes()} | set(class_ids())
    with meta_device():
        return {key: _measure([build_liv(key, width, config)]) for key in keys}


def _describe(spec: BackboneSpec) -> str:
    return f"a width-{_number(spec.width)} model of {_genome_text(spec.genome)} (vocab {_number(spec.vocab_size)})"


def _number(n: int) -> str:
    return str(n) if n < 10**12 else format_count(n)


def _genome_text(genome: Genome) -> str:
    slots = [slot.text() for slot in genome.slots]
    return "-".join(slots) if len(slots) <= 4 else f"{'-'.join(slots[:3])}-… ({len(slots)} slots)"


def _where(device: torch.device) -> str:
    return "this machine has" if device.type == "cpu" else f"{device} has"


def _too_large(spec: BackboneSpec, size: Size, training: bool, available: int, device, at_least: bool = False) -> str:
    need, count = format_bytes(size.bytes(training)), format_count(size.params)
    if at_least:
        need, count = f"more than {need}", f"more than {count}"
    dtype = str(size.dtype).removeprefix("torch.")
    purpose = "to train" if training else "for"
    detail = " (weights, gradients and two AdamW moments)" if training else ""
    state = "free" if device.type != "cpu" else "available"
    settings = "width, vocab_size and max_positions" if spec.max_positions else "width and vocab_size"
    if 2 * spec.embedding_params() >= size.params:
        part = "its embeddings are most of it"
    else:
        part = "its slots are most of it, they grow with width squared"
    return (
        f"{_describe(spec)} would need {need} {purpose} its {count} {dtype} parameters{detail}; "
        f"{_where(device)} {format_bytes(available)} {state} ({settings} set the size; {part})"
    )


def _unsized(spec: BackboneSpec, error: BaseException) -> str:
    return (
        f"{_describe(spec)} cannot be sized: {one_line(error)} "
        "(a size beyond 64 bits: check width, vocab_size and the LIV config)"
    )
