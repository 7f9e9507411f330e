"""VanillaNet in both forms, with the authors' parameter names.

One model file in the manner of timm: each block knows how to ``reparameterize()`` itself from
its training form (BatchNorms, paired 1x1 convs, leaky_relu(act_learn) between them) into its
deploy form (one conv per block, the series activation's BN folded into its depthwise conv).

Parameter names follow huawei-noah/VanillaNet exactly, so the authors' training and deploy
files load with ``strict=True``:

training form: ``stem1.0``, ``stem1.1`` (BN), ``stem2.0``, ``stem2.1`` (BN), ``stem2.2`` (act),
``stages.i.conv1.{0,1}``, ``stages.i.conv2.{0,1}``, ``stages.i.act``, ``cls1.{2,3}``, ``cls2.0``;
deploy form: ``stem.0``, ``stem.1`` (act), ``stages.i.conv``, ``stages.i.act``, ``cls.2``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .limits import MAX_IMG_SIZE

BN_EPS = 1e-6
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Fusion arithmetic dtype. float32 matches float64 to the last reported digit of every
# verification figure (max rel err 1.039e-06 both ways on vanillanet_13) at half the time.
FUSE_DTYPE = torch.float32


@dataclass(frozen=True)
class VanillaNetConfig:
    """Everything that decides the network's structure (strides are not visible in weights)."""

    dims: tuple[int, ...]
    strides: tuple[int, ...]
    ada_pool: tuple[int, ...] | None = None
    act_num: int = 3
    num_classes: int = 1000
    in_chans: int = 3
    drop_rate: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        if self.ada_pool is not None:
            object.__setattr__(self, "ada_pool", tuple(int(n) for n in self.ada_pool))
        if len(self.dims) < 2:
            raise ValueError("dims needs at least two entries (stem width and one stage)")
        if len(self.strides) != len(self.dims) - 1:
            raise ValueError(
                f"strides needs len(dims) - 1 = {len(self.dims) - 1} entries, got {len(self.strides)}"
            )
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must be 1 or 2, got {list(self.strides)}")
        if self.ada_pool is not None and len(self.ada_pool) != len(self.strides):
            raise ValueError(
                f"ada_pool needs one entry per stage ({len(self.strides)}), got {len(self.ada_pool)}"
            )
        if self.act_num < 0 or self.num_classes < 1 or self.in_chans < 1 or min(self.dims) < 1:
            raise ValueError("act_num must be >= 0 and num_classes, in_chans and dims >= 1")

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def is_ada_pool(self) -> bool:
        return self.ada_pool is not None

    @property
    def stride_total(self) -> int:
        """Total downsampling of the stride variants (stem 4 x each stride-2 stage)."""
        total = 4
        for s in self.strides:
            total *= s
        return total

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dims"] = list(self.dims)
        d["strides"] = list(self.strides)
        d["ada_pool"] = None if self.ada_pool is None else list(self.ada_pool)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VanillaNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        return cls(**d)

    def replace(self, **changes) -> "VanillaNetConfig":
        return dataclasses.replace(self, **changes)


def _d13(width: int) -> tuple[int, ...]:
    w = width
    return (w, w, 2 * w) + (4 * w,) * 7 + (8 * w, 8 * w)


_S13 = (1, 2, 2, 1, 1, 1, 1, 1, 1, 2, 1)

VARIANTS: dict[str, VanillaNetConfig] = {
    "vanillanet_5": VanillaNetConfig((512, 1024, 2048, 4096), (2, 2, 2)),
    "vanillanet_6": VanillaNetConfig((512, 1024, 2048, 4096, 4096), (2, 2, 2, 1)),
    "vanillanet_7": VanillaNetConfig((512, 512, 1024, 2048, 4096, 4096), (1, 2, 2, 2, 1)),
    "vanillanet_8": VanillaNetConfig(
        (512, 512, 1024, 2048, 2048, 4096, 4096), (1, 2, 2, 1, 2, 1)
    ),
    "vanillanet_9": VanillaNetConfig(
        (512, 512, 1024) + (2048,) * 3 + (4096, 4096), (1, 2, 2, 1, 1, 2, 1)
    ),
    "vanillanet_10": VanillaNetConfig(
        (512, 512, 1024) + (2048,) * 4 + (4096, 4096), (1, 2, 2, 1, 1, 1, 2, 1)
    ),
    "vanillanet_11": VanillaNetConfig(
        (512, 512, 1024) + (2048,) * 5 + (4096, 4096), (1, 2, 2, 1, 1, 1, 1, 2, 1)
    ),
    "vanillanet_12": VanillaNetConfig(
        (512, 512, 1024) + (2048,) * 6 + (4096, 4096), (1, 2, 2, 1, 1, 1, 1, 1, 2, 1)
    ),
    "vanillanet_13": VanillaNetConfig(_d13(512), _S13),
    "vanillanet_13_x1_5": VanillaNetConfig(_d13(768), _S13),
    "vanillanet_13_x1_5_ada_pool": VanillaNetConfig(
        _d13(768), _S13, ada_pool=(0, 38, 19, 0, 0, 0, 0, 0, 0, 10, 0)
    ),
}


def get_config(name: str) -> VanillaNetConfig:
    try:
        return VARIANTS[name]
    except KeyError:
        raise KeyError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}") from None


def variant_name(cfg: VanillaNetConfig) -> str | None:
    """The published variant with this structure (dims, strides, ada_pool), if any.

    A fine-tuned vanillanet_5 with another number of classes is still a vanillanet_5."""
    for name, known in VARIANTS.items():
        if (known.dims, known.strides, known.ada_pool) == (cfg.dims, cfg.strides, cfg.ada_pool):
            return name
    return None


# --------------------------------------------------------------------------------------------
# fusion helpers (pure tensor maths, in FUSE_DTYPE: float32)


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None,
            bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """W' = W * gamma / sqrt(var + eps), b' = beta + (b - mean) * gamma / sqrt(var + eps)."""
    d = FUSE_DTYPE

    def up(t):
        return None if t is None else t.detach().to(d)

    w, b = fuse_conv_bn_weights(
        up(weight),
        up(bias),
        up(bn.running_mean),
        up(bn.running_var),
        bn.eps,
        up(bn.weight),
        up(bn.bias),
    )
    return w.detach(), b.detach()


def merge_1x1(
    w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """conv2(conv1(x)) as one conv, where conv2 is 1x1 (conv1 may have any kernel).

    W = W2 @ W1 (per spatial tap of W1), b = W2 @ b1 + b2.
    """
    m2 = w2.reshape(w2.shape[0], w2.shape[1]).to(FUSE_DTYPE)
    w1 = w1.to(FUSE_DTYPE)
    w = (m2 @ w1.reshape(w1.shape[0], -1)).reshape(w2.shape[0], *w1.shape[1:])
    b = m2 @ b1.to(FUSE_DTYPE) + b2.to(FUSE_DTYPE)
    return w, b


def _fused_conv(w: torch.Tensor, b: torch.Tensor, like: torch.Tensor, stride=1,
                padding=0) -> nn.Conv2d:
    """A Conv2d holding fused weights, rounded once to ``like``'s dtype (built on the meta
    device first, so no time is spent initialising weights that are replaced at once)."""
    with torch.device("meta"):
        conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride=stride,
                         padding=padding)
    conv.weight = nn.Parameter(w.to(like.dtype), requires_grad=False)
    conv.bias = nn.Parameter(b.to(like.dtype), requires_grad=False)
    return conv


# --------------------------------------------------------------------------------------------
# modules


class SeriesActivation(nn.ReLU):
    """ReLU, then a (2*act_num+1)^2 depthwise conv, then BN (training) / with bias (deploy).

    State dict: ``weight`` and ``bn.*`` (training form), ``weight`` and ``bias`` (deploy form).
    """

    def __init__(self, dim: int, act_num: int = 3, deploy: bool = False):
        super().__init__()
        self.dim = dim
        self.act_num = act_num
        self.deploy = deploy
        k = 2 * act_num + 1
        self.weight = nn.Parameter(torch.empty(dim, 1, k, k))
        if deploy:
            self.bias = nn.Parameter(torch.zeros(dim))
        else:
            self.bias = None
            self.bn = nn.BatchNorm2d(dim, eps=BN_EPS)
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(super().forward(x), self.weight, self.bias, padding=self.act_num,
                     groups=self.dim)
        return y if self.deploy else self.bn(y)

    @torch.no_grad()
    def reparameterize(self) -> None:
        if self.deploy:
            return
        w, b = fold_bn(self.weight, None, self.bn)
        dtype = self.weight.dtype
        self.weight = nn.Parameter(w.to(dtype), requires_grad=False)
        self.bias = nn.Parameter(b.to(dtype), requires_grad=False)
        del self.bn
        self.deploy = True


def _pool(stride: int, ada: int) -> nn.Module:
    if ada:
        return nn.AdaptiveMaxPool2d((ada, ada))
    return nn.Identity() if stride == 1 else nn.MaxPool2d(stride)


class Block(nn.Module):
    """conv1x1, BN, leaky_relu(act_learn), conv1x1, BN, pool, series activation."""

    def __init__(self, dim: int, dim_out: int, act_num: int = 3, stride: int = 2,
                 ada_pool: int = 0, deploy: bool = False):
        super().__init__()
        self.deploy = deploy
        self.act_learn = 1.0
        if deploy:
            self.conv = nn.Conv2d(dim, dim_out, 1)
        else:
            self.conv1 = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim, eps=BN_EPS))
            self.conv2 = nn.Sequential(nn.Conv2d(dim, dim_out, 1),
                                       nn.BatchNorm2d(dim_out, eps=BN_EPS))
        self.pool = _pool(stride, ada_pool)
        self.act = SeriesActivation(dim_out, act_num, deploy=deploy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.conv(x)
        else:
            x = self.conv1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.conv2(x)
        return self.act(self.pool(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold both BNs and merge the two 1x1 convs (exact only at act_learn == 1)."""
        if self.deploy:
            return
        w1, b1 = fold_bn(self.conv1[0].weight, self.conv1[0].bias, self.conv1[1])
        w2, b2 = fold_bn(self.conv2[0].weight, self.conv2[0].bias, self.conv2[1])
        self.conv = _fused_conv(*merge_1x1(w1, b1, w2, b2), like=self.conv1[0].weight)
        del self.conv1, self.conv2
        self.act.reparameterize()
        self.deploy = True


class VanillaNet(nn.Module):
    def __init__(self, cfg: VanillaNetConfig, deploy: bool = False):
        super().__init__()
        self.cfg = cfg
        self.deploy = deploy
        self.act_learn = 1.0
        c0 = cfg.dims[0]
        stem_kw = dict(stride=3, padding=1) if cfg.is_ada_pool else dict(stride=4)
        if deploy:
            self.stem = nn.Sequential(nn.Conv2d(cfg.in_chans, c0, 4, **stem_kw),
                                      SeriesActivation(c0, cfg.act_num, deploy=True))
        else:
            self.stem1 = nn.Sequential(nn.Conv2d(cfg.in_chans, c0, 4, **stem_kw),
                                       nn.BatchNorm2d(c0, eps=BN_EPS))
            self.stem2 = nn.Sequential(nn.Conv2d(c0, c0, 1), nn.BatchNorm2d(c0, eps=BN_EPS),
                                       SeriesActivation(c0, cfg.act_num))
        ada = cfg.ada_pool or (0,) * cfg.num_stages
        self.stages = nn.ModuleList(
            Block(cfg.dims[i], cfg.dims[i + 1], cfg.act_num, cfg.strides[i], ada[i], deploy)
            for i in range(cfg.num_stages)
        )
        c_last = cfg.dims[-1]
        if deploy:
            self.cls = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(cfg.drop_rate),
                                     nn.Conv2d(c_last, cfg.num_classes, 1))
        else:
            self.cls1 = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Dropout(cfg.drop_rate),
                                      nn.Conv2d(c_last, cfg.num_classes, 1),
                                      nn.BatchNorm2d(cfg.num_classes, eps=BN_EPS))
            self.cls2 = nn.Sequential(nn.Conv2d(cfg.num_classes, cfg.num_classes, 1))
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_act_learn(self, value: float) -> None:
        self.act_learn = float(value)
        for stage in self.stages:
            stage.act_learn = float(value)

    # -- forward, split so that verification can compare stage by stage
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.stem(x)
        x = self.stem1(x)
        x = F.leaky_relu(x, self.act_learn)
        return self.stem2(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            x = self.cls(x)
        else:
            x = self.cls1(x)
            x = F.leaky_relu(x, self.act_learn)
            x = self.cls2(x)
        return torch.flatten(x, 1)

    def forward_stages(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Every intermediate output, named as ``--locate`` reports them."""
        outs = [("stem", self.forward_stem(x))]
        x = outs[0][1]
        for i, stage in enumerate(self.stages):
            x = stage(x)
            outs.append((f"stages.{i}", x))
        outs.append(("head", self.forward_head(x)))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.forward_head(x)

    @torch.no_grad()
    def reparameterize(self) -> "VanillaNet":
        """Switch to the deploy form in place (exact only at act_learn == 1). Returns self."""
        if self.deploy:
            return self
        conv = self.stem1[0]
        w1, b1 = fold_bn(conv.weight, conv.bias, self.stem1[1])
        w2, b2 = fold_bn(self.stem2[0].weight, self.stem2[0].bias, self.stem2[1])
        stem_conv = _fused_conv(*merge_1x1(w1, b1, w2, b2), like=conv.weight,
                                stride=conv.stride, padding=conv.padding)
        act = self.stem2[2]
        act.reparameterize()
        self.stem = nn.Sequential(stem_conv, act)
        del self.stem1, self.stem2
        for stage in self.stages:
            stage.reparameterize()
        w1, b1 = fold_bn(self.cls1[2].weight, self.cls1[2].bias, self.cls1[3])
        c2 = self.cls2[0]
        head = _fused_conv(*merge_1x1(w1, b1, c2.weight, c2.bias), like=c2.weight)
        self.cls = nn.Sequential(self.cls1[0], self.cls1[1], head)
        del self.cls1, self.cls2
        self.deploy = True
        return self


def build(cfg: VanillaNetConfig | str, deploy: bool = False, device: str | torch.device = "cpu",
          init: bool = True) -> VanillaNet:
    """A VanillaNet of a config or variant name. ``init=False`` skips the (slow) random init,
    for models whose weights are about to be loaded."""
    if isinstance(cfg, str):
        cfg = get_config(cfg)
    if init:
        with torch.device(device):
            return VanillaNet(cfg, deploy=deploy)
    with torch.device("meta"):
        model = VanillaNet(cfg, deploy=deploy)
    return model.to_empty(device=device)


def parameter_count(cfg: VanillaNetConfig, deploy: bool = True) -> int:
    with torch.device("meta"):
        model = VanillaNet(cfg, deploy=deploy)
    return sum(p.numel() for p in model.parameters())


def multiply_adds(cfg: VanillaNetConfig, img_size: int = 224, deploy: bool = True) -> int:
    """Multiply-adds of the convolutions at one image of ``img_size``, counted on the meta device."""
    with torch.device("meta"):
        model = VanillaNet(cfg, deploy=deploy).eval()
    total = 0

    def hook(m: nn.Conv2d, inp, out) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        total += out.shape[2] * out.shape[3] * m.out_channels * k

    def act_hook(m: SeriesActivation, inp, out) -> None:
        nonlocal total
        total += out.shape[2] * out.shape[3] * m.dim * m.weight.shape[-1] ** 2

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_hook(act_hook) for m in model.modules()
                if isinstance(m, SeriesActivation)]
    with torch.no_grad():
        model(torch.empty(1, cfg.in_chans, img_size, img_size, device="meta"))
    for h in handles:
        h.remove()
    return total


def check_img_size(cfg: VanillaNetConfig, img_size: int) -> str | None:
    """Why ``img_size`` does not suit ``cfg`` (None if it does)."""
    if not 1 <= img_size <= MAX_IMG_SIZE:
        return f"input size {img_size} is outside 1..{MAX_IMG_SIZE}"
    if cfg.is_ada_pool:
        if img_size < 32:
            return f"the ada_pool variant needs an input of at least 32 pixels, got {img_size}"
        return None
    step = cfg.stride_total
    if img_size < step or img_size % step:
        return f"input size {img_size} must be a positive multiple of {step} for this variant"
    return None
