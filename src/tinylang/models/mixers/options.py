"""The built-in mixers' options and what planning needs to know of each mixer, without torch.

A study's config is validated (and the workflow planned) from these alone: ``Options`` classes
validate a model's ``mixer_args`` and check that they fit its width (``check_shape``), and say
which state mixer the mixer's blocks have by default and whether it keeps attention
probabilities. The ``nn.Module`` of a built-in mixer (in its own module of this package, named
in ``BUILT_IN_MIXERS``) is imported only when a model is built. A mixer from outside tinylang
keeps all of this on its class.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from tinylang.strict import StrictModel


class MixerOptions(StrictModel):
    """Hyperparameters of one mixer; subclasses add fields. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # "mlp" for Transformer-style blocks, "none" for Mamba-style blocks (no state mixer).
    default_state_mixer: ClassVar[str] = "mlp"
    # Whether the mixer keeps softmax attention probabilities for the attention evaluator.
    stores_attention: ClassVar[bool] = False

    def check_shape(self, d_model: int, n_layers: int) -> None:
        """ValueError when these options cannot build ``n_layers`` layers of width ``d_model``
        (e.g. heads that do not divide it): checked with the study, before any job runs."""


def check_divides(d_model: int, parts: int, name: str) -> None:
    """ValueError unless ``parts`` (heads, or a head width) divides ``d_model``."""
    if d_model % parts:
        raise ValueError(f"d_model ({d_model}) must be divisible by {name} ({parts})")


LONG = -1
"""The ``kernel_size`` entry of a long-convolution layer."""


def _check_kernel_size(k: int) -> int:
    if k != LONG and k < 1:
        raise ValueError(f"a kernel size is at least 1, or -1 for the long convolution; got {k}")
    return k


KernelSize = Annotated[int, AfterValidator(_check_kernel_size)]


def layer_kernel_size(kernel_size: int | list[int], layer_idx: int) -> int:
    """The kernel size of layer ``layer_idx``: the int itself, or the list's entry."""
    if isinstance(kernel_size, int):
        return kernel_size
    if layer_idx >= len(kernel_size):
        raise ValueError(f"kernel_size {kernel_size} has no entry for layer {layer_idx}: "
                         "give one per layer, or a single int")
    return kernel_size[layer_idx]


class AttentionOptions(MixerOptions):
    stores_attention: ClassVar[bool] = True

    n_heads: int = Field(1, ge=1)
    bias: bool = False  # of the qkv projection (the paper's `bias: false`)
    out_bias: bool = True  # zoology's MHA always gives out_proj a bias

    def check_shape(self, d_model: int, n_layers: int) -> None:
        check_divides(d_model, self.n_heads, "n_heads")


class BaseConvOptions(MixerOptions):
    kernel_size: KernelSize | Annotated[list[KernelSize], Field(min_length=1)] = Field(
        default_factory=lambda: [3, LONG, 3, LONG])
    l_max: int = Field(1024, ge=1)  # length of the long filters
    long_conv: Literal["implicit", "explicit"] = "implicit"
    use_act: bool = False
    bias: bool = True
    out_proj: bool = False
    identity_skips: bool = True

    def check_shape(self, d_model: int, n_layers: int) -> None:
        layer_kernel_size(self.kernel_size, n_layers - 1)


class BasedOptions(MixerOptions):
    layout: Literal["hybrid", "every_layer"] = "hybrid"
    feature_dim: int = Field(8, ge=1)
    n_heads: Annotated[int, Field(ge=1)] | Literal["auto"] = 1  # auto: max(1, d_model // 16)
    eps: float = Field(1e-12, ge=0)
    bias: bool = False  # of proj_q/k/v/o (zoology's have none)
    kernel_size: KernelSize = 3  # the BaseConv's filter; -1: the implicit long one
    l_max: int = Field(1024, ge=1)  # the long filter's length (kernel_size -1)
    short_conv: bool = True  # every_layer: the BaseConv before the attention
    chunk_size: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _short_conv_only_every_layer(self) -> BasedOptions:
        if not self.short_conv and self.layout == "hybrid":
            raise ValueError("short_conv: false needs layout: every_layer (the hybrid layout's even layers "
                             "are the BaseConv; kernel_size: -1 gives them the long filter instead)")
        return self

    def heads(self, d_model: int) -> int:
        return max(1, d_model // 16) if self.n_heads == "auto" else self.n_heads

    def check_shape(self, d_model: int, n_layers: int) -> None:
        check_divides(d_model, self.heads(d_model), "n_heads")


class DeltaNetOptions(MixerOptions):
    n_heads: Annotated[int, Field(ge=1)] | Literal["auto"] = 4  # zoology's default; auto: max(1, d_model // 64)
    d_conv: int = Field(4, ge=1)
    use_short_conv: bool = True
    conv_bias: bool = False
    bias: bool = False
    norm_eps: float = Field(1e-5, gt=0)
    algorithm: Literal["chunk", "loop"] = "chunk"
    chunk_size: int = Field(64, ge=1)

    def heads(self, d_model: int) -> int:
        return max(1, d_model // 64) if self.n_heads == "auto" else self.n_heads

    def check_shape(self, d_model: int, n_layers: int) -> None:
        check_divides(d_model, self.heads(d_model), "n_heads")


class H3Options(MixerOptions):
    d_state: int = Field(1024, ge=2)  # shift-SSM states and diagonal-SSM state (d_state/2 complex modes)
    head_dim: int = Field(2, ge=1)
    l_max: int = Field(1024, ge=1)  # longest kernel: both convolutions are cut to l_max taps
    learned_B: bool = True  # False: both B fixed at their initialisation (our earlier variant)
    discretization: Literal["bilinear", "zoh"] = "bilinear"
    bias: bool = False  # ignored, as in zoology's H3 (its projections always have biases)

    @field_validator("d_state")
    @classmethod
    def _even(cls, d_state: int) -> int:
        if d_state % 2:
            raise ValueError(f"d_state must be even (complex modes come in conjugate pairs), got {d_state}")
        return d_state

    def check_shape(self, d_model: int, n_layers: int) -> None:
        check_divides(d_model, self.head_dim, "head_dim")


class HyenaOptions(MixerOptions):
    operator: Literal["zoology", "alternating"] = "zoology"
    order: int = Field(2, ge=1)  # gates; the zoology operator is order 2 with one long convolution
    positions: Literal["learned", "fixed"] = "learned"  # trained table z, or computed features
    filter_order: int = Field(64, ge=1)  # width of the implicit filter's MLP
    short_filter: int = Field(3, ge=1)  # taps of the short depthwise convolution
    emb_dim: int = Field(3, ge=3)  # positional features: t plus (emb_dim - 1) / 2 cos/sin pairs
    l_max: int = Field(1024, ge=2)  # the positional table's length and the decay's time scale
    bias: bool = False  # the long convolution's skip term (zoology's `bias`; False zeroes it)

    @field_validator("emb_dim")
    @classmethod
    def _odd(cls, emb_dim: int) -> int:
        if emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd (t plus cos/sin pairs), got {emb_dim}")
        return emb_dim

    @model_validator(mode="after")
    def _zoology_is_order_two(self) -> HyenaOptions:
        if self.operator == "zoology" and self.order != 2:
            raise ValueError(f"the zoology operator has order 2 (got {self.order}); "
                             "use operator: alternating for other orders")
        return self


class LSTMOptions(MixerOptions):
    default_state_mixer: ClassVar[str] = "none"

    bias: bool = True


class MambaOptions(MixerOptions):
    default_state_mixer: ClassVar[str] = "none"

    d_state: int = Field(16, ge=1)
    d_conv: int = Field(4, ge=1)
    expand: int = Field(2, ge=1)
    dt_rank: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    conv: Literal["causal", "none"] = "causal"
    # How the causal convolution is computed: "auto" may take a fused causal-conv1d kernel
    # where one exists (none does yet: the pure-PyTorch path always uses nn.Conv1d);
    # "torch" always uses the ordinary nn.Conv1d (the ``mamba_conv1d`` ablation).
    conv_impl: Literal["auto", "torch"] = "auto"
    bias: bool = False
    conv_bias: bool = True
    dt_min: float = Field(0.001, gt=0)
    dt_max: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _dt_range(self) -> MambaOptions:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max})")
        return self


class MambaWithoutConvOptions(MambaOptions):
    conv: Literal["causal", "none"] = "none"
    # The paper's MambaWithoutConv still builds its d_conv-tap conv1d and never applies it; kept
    # (frozen, unused) so parameter counts equal the original's. false: build no convolution.
    unused_conv: bool = True


class MambaConv1dOptions(MambaOptions):
    conv: Literal["causal"] = "causal"
    conv_impl: Literal["torch"] = "torch"


class Mamba2Options(MixerOptions):
    default_state_mixer: ClassVar[str] = "none"

    d_state: int = Field(16, ge=1)
    d_conv: int = Field(4, ge=1)
    expand: int = Field(2, ge=1)
    headdim: int = Field(16, ge=1)
    ngroups: int = Field(1, ge=1)
    chunk_size: int = Field(64, ge=1)
    bias: bool = False
    conv_bias: bool = True
    dt_min: float = Field(0.001, gt=0)
    dt_max: float = Field(0.1, gt=0)
    dt_init_floor: float = Field(1e-4, gt=0)
    A_init_min: float = Field(1.0, gt=0)
    A_init_max: float = Field(16.0, gt=0)
    norm_eps: float = Field(1e-5, gt=0)

    @model_validator(mode="after")
    def _ranges(self) -> Mamba2Options:
        if self.dt_min > self.dt_max:
            raise ValueError(f"dt_min ({self.dt_min}) must not exceed dt_max ({self.dt_max})")
        if self.A_init_min > self.A_init_max:
            raise ValueError(f"A_init_min ({self.A_init_min}) must not exceed A_init_max ({self.A_init_max})")
        return self

    def check_shape(self, d_model: int, n_layers: int) -> None:
        d_inner = self.expand * d_model
        if d_inner % self.headdim:
            raise ValueError(f"d_inner = expand * d_model ({d_inner}) must be divisible by headdim ({self.headdim})")
        if (d_inner // self.headdim) % self.ngroups:
            raise ValueError(f"the number of heads ({d_inner // self.headdim}) must be divisible by ngroups "
                             f"({self.ngroups})")


class RWKVOptions(MixerOptions):
    bias: bool = False
    wkv: Literal["scan", "softmax"] = "scan"  # parallel algorithm; both are exact


BUILT_IN_MIXERS: dict[str, tuple[str, type[MixerOptions]]] = {
    "attention": ("attention", AttentionOptions),
    "base_conv": ("base_conv", BaseConvOptions),
    "based": ("based", BasedOptions),
    "deltanet": ("deltanet", DeltaNetOptions),
    "h3": ("h3", H3Options),
    "hyena": ("hyena", HyenaOptions),
    "lstm": ("lstm", LSTMOptions),
    "mamba": ("mamba", MambaOptions),
    "mamba_without_conv": ("mamba", MambaWithoutConvOptions),
    "mamba_conv1d": ("mamba", MambaConv1dOptions),
    "mamba2": ("mamba2", Mamba2Options),
    "rwkv": ("rwkv", RWKVOptions),
}
"""Built-in mixer name → (its module in this package, its options)."""
