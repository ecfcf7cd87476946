"""The shape every LIV layer shares: ``y = out_proj(mix(own(x), cached(x)))``.

A LIV's featurizer computes feature groups from the input. We split them in two sides:

* the **cached side**: what decoding must remember about past tokens (attention's K and V, the input
  history of a convolution, the inputs and state of a recurrence);
* the **own side**: what is only needed at the current token (attention's Q, a convolution's C gate, a
  recurrence's readout C).

The split is what makes STAR's feature-group sharing concrete: a layer built with ``reuse_features=True`` has
no cached side of its own and mixes its own features with the cached features of an earlier layer, so their
inference cache exists once. Every family implements the same six hooks for the two forms:

======================  ===================================  ============================================
                        parallel form (training)             recurrent form (decoding)
======================  ===================================  ============================================
own side                ``own_features(x)``                  ``own_step(x_t, own_state)``
cached side             ``cached_features(x)``               ``cached_step(x_t, cached_state)``
token mixing            ``mix(own, cached)``                 ``mix_step(own, cached)``
======================  ===================================  ============================================

and reports the size of its state analytically (``own_cache_values``/``cached_cache_values``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from starlab.liv.config import LIVConfig
from starlab.liv.pool import LIVClass

#: Decoding state: nested dicts/tuples of tensors (plain data, so its real size can be measured).
State = dict[str, Any]


def computed_on_cpu(make: Callable[[], Tensor], shape: tuple[int, ...]) -> Tensor:
    """Initial values made by elementwise math (or ``linspace``) of ``shape``, computed on the CPU and moved to
    the device being built on. Models are sized on the meta device, where such math runs PyTorch's Python
    reference kernels; their first calls import ``torch._dynamo`` and sympy, seconds at the start of every
    process that sizes a model. On meta nothing is computed: sizing an absurd width (a billion channels) must
    not fill gigabytes of CPU memory with values nobody reads, and it leaves the random stream alone."""
    device = torch.get_default_device()
    if device.type == "meta":
        return torch.empty(shape)
    with torch.device("cpu"):
        values = make()
    return values.to(device)


class _SkipNormalFill(TorchFunctionMode):
    """Leaves meta tensors' normal initialisation out: there are no values to fill, and filling them runs
    the Python reference kernel whose first call imports ``torch._dynamo``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (Tensor.normal_, nn.init.normal_):
            target = args[0] if args else kwargs["tensor"]
            if target.is_meta:
                return target
        return func(*args, **kwargs)


@contextmanager
def meta_device() -> Iterator[None]:
    """Build modules on the meta device (shapes, no storage: how models are sized) without the seconds that
    PyTorch's first Python meta kernel costs a fresh process (every CLI command and worker sizes models)."""
    with torch.device("meta"), _SkipNormalFill():
        yield


def state_nbytes(state: Any) -> int:
    """Bytes held by all tensors in a (nested) state."""
    if isinstance(state, Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


def check_input(x: Any, width: int, rank: int, who: str) -> None:
    """Raise a one-line ``ValueError`` for anything but a float tensor of shape (..., width)."""
    expected = "(batch, length, width)" if rank == 3 else "(batch, width)"
    expected = expected.replace("width", str(width))
    if not isinstance(x, Tensor):
        raise ValueError(f"{who} expects a torch.Tensor of shape {expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"{who} expects a floating-point tensor of shape {expected}, got dtype {x.dtype}")
    if x.dim() != rank or x.shape[-1] != width:
        raise ValueError(f"{who} expects shape {expected}, got {tuple(x.shape)}")


class LIV(nn.Module):
    """Public interface of every LIV layer: parallel form, recurrent form, cache size, input checks.

    Args:
        spec: the pool entry this layer instantiates.
        width: model width ``d``; input and output are ``(batch, length, d)``.
        config: shared hyper-parameters.
        reuse_features: build without a cached side; ``forward_features``/``step_features`` then need the
            cached features of an earlier layer (feature-group sharing).
    """

    def __init__(self, spec: LIVClass, width: int, config: LIVConfig, reuse_features: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.width = width
        self.config = config
        self.reuse_features = reuse_features

    # ---- implemented by subclasses -------------------------------------------------------------------
    def _forward_features(self, x: Tensor, shared: Any) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _step_features(self, x_t: Tensor, state: State, shared: Any) -> tuple[Tensor, State, Any]:
        raise NotImplementedError

    def _init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        raise NotImplementedError

    def _cache_values(self, seq_len: int) -> int:
        raise NotImplementedError

    # ---- public interface ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    def forward(self, x: Tensor) -> Tensor:
        """Parallel form: ``(batch, length, width) -> (batch, length, width)``, causal."""
        return self.forward_features(x)[0]

    def forward_features(self, x: Tensor, shared: Any = None) -> tuple[Tensor, Any]:
        """Parallel form that also returns the cached features (for layers that reuse them)."""
        check_input(x, self.width, 3, self.name)
        return self._forward_features(x, self._check_shared(shared))

    def init_state(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> State:
        """Empty decoding state for ``batch`` sequences."""
        reference = next(self.parameters())
        return self._init_state(batch, device or reference.device, dtype or reference.dtype)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """Recurrent form: one token ``(batch, width)`` in, one out, with the updated state."""
        y_t, state, _ = self.step_features(x_t, state)
        return y_t, state

    def step_features(self, x_t: Tensor, state: State, shared: Any = None) -> tuple[Tensor, State, Any]:
        """Recurrent form that also returns what a feature-reusing layer needs at this step."""
        check_input(x_t, self.width, 2, self.name)
        return self._step_features(x_t, state, self._check_shared(shared))

    def cache_bytes(self, seq_len: int, bytes_per_value: int = 2) -> int:
        """Analytic bytes of decoding state for one sequence after ``seq_len`` tokens."""
        if not isinstance(seq_len, int) or seq_len < 0:
            raise ValueError(f"seq_len must be a non-negative integer, got {seq_len!r}")
        return self._cache_values(seq_len) * bytes_per_value

    def _check_shared(self, shared: Any) -> Any:
        if self.reuse_features and shared is None:
            raise ValueError(f"{self.name} was built to reuse an earlier layer's features; pass them as shared=")
        if not self.reuse_features and shared is not None:
            raise ValueError(f"{self.name} computes its own cached features; it takes no shared= features")
        return shared

    def extra_repr(self) -> str:
        reuse = ", reuse_features=True" if self.reuse_features else ""
        return f"{self.name}, width={self.width}{reuse}"


class FeaturizedLIV(LIV):
    """A LIV made of one featurizer module, the six family hooks and an output projection.

    Args (beyond :class:`LIV`'s):
        mix_width: channels of the token-mixing output (the output projection maps them back to ``width``).
        featurizer: an existing featurizer module to use instead of a new one (featurizer sharing).
        project: add the output projection (differential classes build their branches without one).
    """

    #: The featurizer module type of the family; constructed as ``Featurizer(spec, width, config, cached)``.
    Featurizer: type[nn.Module]

    def __init__(
        self,
        spec: LIVClass,
        width: int,
        config: LIVConfig,
        *,
        mix_width: int,
        featurizer: nn.Module | None = None,
        reuse_features: bool = False,
        project: bool = True,
    ) -> None:
        super().__init__(spec, width, config, reuse_features)
        self.mix_width = mix_width
        self.featurizer = featurizer or self.Featurizer(spec, width, config, cached=not reuse_features)
        self.out_proj = nn.Linear(mix_width, width, bias=False) if project else None

    # ---- family hooks --------------------------------------------------------------------------------
    def own_features(self, x: Tensor) -> Any:
        raise NotImplementedError

    def cached_features(self, x: Tensor) -> Any:
        raise NotImplementedError

    def mix(self, own: Any, cached: Any) -> Tensor:
        raise NotImplementedError

    def own_step(self, x_t: Tensor, state: State) -> tuple[Any, State]:
        raise NotImplementedError

    def cached_step(self, x_t: Tensor, state: State) -> tuple[Any, State]:
        raise NotImplementedError

    def mix_step(self, own: Any, cached: Any) -> Tensor:
        raise NotImplementedError

    def init_own_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {}

    def init_cached_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return {}

    def own_cache_values(self, seq_len: int) -> int:
        """Number of values in the own-side state after ``seq_len`` tokens (one sequence)."""
        return 0

    def cached_cache_values(self, seq_len: int) -> int:
        """Number of values in the cached-side state after ``seq_len`` tokens (one sequence)."""
        return 0

    # ---- the generic two-sided LIV -------------------------------------------------------------------
    def _forward_features(self, x: Tensor, shared: Any) -> tuple[Tensor, Any]:
        cached = shared if self.reuse_features else self.cached_features(x)
        return self._project(self.mix(self.own_features(x), cached)), cached

    def _step_features(self, x_t: Tensor, state: State, shared: Any) -> tuple[Tensor, State, Any]:
        own, own_state = self.own_step(x_t, state["own"])
        new_state: State = {"own": own_state}
        if self.reuse_features:
            cached = shared
        else:
            cached, new_state["cached"] = self.cached_step(x_t, state["cached"])
        return self._project(self.mix_step(own, cached)), new_state, cached

    def _init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        state: State = {"own": self.init_own_state(batch, device, dtype)}
        if not self.reuse_features:
            state["cached"] = self.init_cached_state(batch, device, dtype)
        return state

    def _cache_values(self, seq_len: int) -> int:
        values = self.own_cache_values(seq_len)
        return values if self.reuse_features else values + self.cached_cache_values(seq_len)

    def _project(self, y: Tensor) -> Tensor:
        return self.out_proj(y) if self.out_proj is not None else y
