"""pix2pix (Isola et al., 2017): U-Net generator, PatchGAN discriminator, cGAN + L1 objective.

A clean-room implementation of the networks of junyanz/pytorch-CycleGAN-and-pix2pix
(``models/networks.py``) with the official module names and ``nn.Sequential`` layouts, so the
released ``.pth`` generators load with ``strict=True``. This module also holds the pieces
that CycleGAN shares (norm layers, PatchGAN, GAN loss, image pool, LR schedule, the official
checkpoint loader, test-time modes); :mod:`baselines.cyclegan` imports them from here.

Conventions
-----------
* Images are ``(B, C, H, W)`` float tensors in ``[-1, 1]``; generators end in ``Tanh``.
* ``norm='batch'`` → ``BatchNorm2d(affine=True, track_running_stats=True)``;
  ``norm='instance'`` → ``InstanceNorm2d(affine=False, track_running_stats=False)``.
* ``use_bias = (norm layer is InstanceNorm2d)``: convolutions followed by BatchNorm (or by no
  norm at all, ``norm='none'``) have no bias. Layers that are never followed by a norm
  (outermost U-Net up-convolution, first and last discriminator convolutions) always have one.
* ``nn.Sequential`` indices count parameter-free layers (activations, Dropout, Tanh, pads),
  so state-dict indices are sparse, e.g. ``model.model.1.model.2.running_mean``.
* The pix2pix discriminator is conditional: it sees ``cat(A, B)`` along channels
  (``input_nc + output_nc`` channels) and outputs a ``(B, 1, H', W')`` map of logits,
  one per 70×70 receptive field for the default ``n_layers=3``.

Sections follow the paper: networks (§3.2), objective (§3.1, §3.3), optimisation and
inference (§3.3), then checkpoint loading.
"""

from __future__ import annotations

import functools
import os
import pickle
import random
from collections import OrderedDict
from typing import Callable, Mapping

import torch
import torch.nn as nn

__all__ = [
    "get_norm_layer",
    "uses_bias",
    "init_weights",
    "UnetSkipConnectionBlock",
    "UnetGenerator",
    "NLayerDiscriminator",
    "define_G",
    "define_D",
    "GANLoss",
    "discriminator_loss",
    "pix2pix_generator_loss",
    "pix2pix_discriminator_loss",
    "ImagePool",
    "linear_decay_lambda",
    "TEST_MODES",
    "set_test_mode",
    "read_state_dict",
    "patch_instance_norm_state_dict",
    "load_official_state_dict",
]


# --------------------------------------------------------------------------------------
# Normalisation layers and initialisation
# --------------------------------------------------------------------------------------


def _no_norm(num_features: int) -> nn.Module:
    """``norm='none'``: a parameter-free identity in the place of the norm layer."""
    return nn.Identity()


def get_norm_layer(norm_type: str = "instance") -> Callable[[int], nn.Module]:
    """Return the factory ``norm_layer(num_features)`` for ``norm_type``.

    * ``'batch'``: ``BatchNorm2d(affine=True, track_running_stats=True)`` (learned scale and
      shift, running statistics; 5 state-dict entries per layer).
    * ``'instance'``: ``InstanceNorm2d(affine=False, track_running_stats=False)`` (no
      parameters and no buffers, so no state-dict entries).
    * ``'none'``: identity. As in the official code, convolutions then have **no** bias.
    """
    if norm_type == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if norm_type == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if norm_type == "none":
        return _no_norm
    raise ValueError(f"normalization layer {norm_type!r} is not supported; use 'batch', 'instance' or 'none'")


def uses_bias(norm_layer: Callable[..., nn.Module]) -> bool:
    """The official ``use_bias`` rule: convolutions carry a bias iff the norm is InstanceNorm2d.

    BatchNorm's learned shift makes a bias redundant; InstanceNorm here has ``affine=False``.
    ``norm_layer`` may be a class or a ``functools.partial`` of one.
    """
    layer_cls = norm_layer.func if isinstance(norm_layer, functools.partial) else norm_layer
    return layer_cls is nn.InstanceNorm2d


def init_weights(net: nn.Module, init_type: str = "normal", init_gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place as the official ``init_weights`` does; returns ``net``.

    Conv/Linear weights: ``normal`` N(0, gain²), ``xavier`` (xavier-normal, gain),
    ``kaiming`` (kaiming-normal, a=0, fan_in) or ``orthogonal`` (gain); their biases 0.
    BatchNorm2d: weight N(1, gain²), bias 0. Modules are matched by class name, as upstream.
    """
    initialisers = {
        "normal": lambda w: nn.init.normal_(w, 0.0, init_gain),
        "xavier": lambda w: nn.init.xavier_normal_(w, gain=init_gain),
        "kaiming": lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=init_gain),
    }
    if init_type not in initialisers:
        raise ValueError(f"initialization method {init_type!r} is not supported; use one of {sorted(initialisers)}")

    def init_module(m: nn.Module) -> None:
        name = type(m).__name__
        if getattr(m, "weight", None) is not None and ("Conv" in name or "Linear" in name):
            initialisers[init_type](m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, init_gain)
            nn.init.zeros_(m.bias)

    return net.apply(init_module)


# --------------------------------------------------------------------------------------
# Generator: U-Net with skip connections (paper §3.2.1)
# --------------------------------------------------------------------------------------


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-sample, run ``submodule`` (the inner levels), up-sample, concatenate.

    ``self.model`` is an ``nn.Sequential`` whose layout fixes the state-dict indices:

    * outermost: ``[downconv, submodule, uprelu, upconv, Tanh]``; returns ``model(x)``.
    * innermost: ``[downrelu, downconv, uprelu, upconv, upnorm]``.
    * middle:    ``[downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm(, Dropout(0.5))]``.

    Non-outermost blocks return ``cat([x, model(x)], dim=1)`` with ``outer_nc * 2`` channels.
    As upstream, ``downrelu`` is ``LeakyReLU(0.2, inplace=True)`` and so rewrites ``x`` to
    ``LeakyReLU(x)`` before the concatenation. This changes nothing numerically: the enclosing
    block applies ``ReLU`` next, and ``ReLU(LeakyReLU(x)) = ReLU(x)``.

    Args:
        outer_nc: channels of this block's output (before concatenation).
        inner_nc: channels after the down convolution.
        input_nc: channels of ``x``; defaults to ``outer_nc``.
        submodule: the next-inner block (``None`` for the innermost).
    """

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        use_bias = uses_bias(norm_layer)
        if input_nc is None:
            input_nc = outer_nc
        if not innermost and submodule is None:
            raise ValueError("a non-innermost UnetSkipConnectionBlock needs a submodule")

        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
        downrelu = nn.LeakyReLU(0.2, True)
        uprelu = nn.ReLU(True)

        if outermost:
            # The submodule returns inner_nc * 2 channels (its input concatenated with its output).
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            layers = [downrelu, downconv, norm_layer(inner_nc), submodule, uprelu, upconv, norm_layer(outer_nc)]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net generator: ``(B, input_nc, H, W)`` → ``(B, output_nc, H, W)`` in ``[-1, 1]``.

    ``num_downs`` levels, each halving the resolution, so ``H`` and ``W`` must be divisible by
    ``2 ** num_downs`` (``unet_256``: num_downs=8 → 1×1 bottleneck at 256×256). Channels from the
    outside in: ngf, 2·ngf, 4·ngf, then 8·ngf for the remaining ``num_downs - 4`` levels; dropout
    (when enabled) sits in the ``num_downs - 5`` 8·ngf levels just outside the innermost one.
    State dict: ``model.model.*`` (outermost), ``model.model.1.model.*`` (2nd level),
    ``+ .model.3`` per deeper level.
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"UnetGenerator needs num_downs >= 5, got {num_downs}")
        # Build from the innermost level outwards.
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, submodule=None, norm_layer=norm_layer, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm_layer=norm_layer, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm_layer=norm_layer)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm_layer=norm_layer)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm_layer=norm_layer
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


# --------------------------------------------------------------------------------------
# Discriminator: PatchGAN (paper §3.2.2)
# --------------------------------------------------------------------------------------


class NLayerDiscriminator(nn.Module):
    """PatchGAN discriminator: ``(B, input_nc, H, W)`` → ``(B, 1, H/8 - 2, W/8 - 2)`` logits.

    With ``n_layers=3`` each output logit sees a 70×70 patch. Layout of ``self.model``
    (4×4 convolutions, padding 1, LeakyReLU 0.2): conv(s2) · lrelu · [conv(s2) · norm · lrelu]
    × (n_layers-1) · conv(s1) · norm · lrelu · conv(s1) → 1 channel. Channel widths are
    ``ndf · min(2**n, 8)``. No sigmoid: the GAN loss works on logits.
    """

    def __init__(
        self,
        input_nc: int,
        ndf: int = 64,
        n_layers: int = 3,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        use_bias = uses_bias(norm_layer)
        kw, padw = 4, 1
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw),
            nn.LeakyReLU(0.2, True),
        ]
        nf_mult = 1
        for n in range(1, n_layers):  # down-sampling convolutions
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            layers += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=use_bias),
                norm_layer(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        layers += [  # one more convolution at stride 1
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=use_bias),
            norm_layer(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
        ]
        layers.append(nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw))
        self.model = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


# --------------------------------------------------------------------------------------
# Factories (official define_G / define_D names)
# --------------------------------------------------------------------------------------


def define_G(
    input_nc: int,
    output_nc: int,
    ngf: int,
    netG: str,
    norm: str = "batch",
    use_dropout: bool = False,
    init_type: str | None = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """Build a generator by its official name.

    ``netG``: ``'unet_128'`` (7 levels), ``'unet_256'`` (8 levels), ``'resnet_6blocks'``,
    ``'resnet_9blocks'`` (from :mod:`baselines.cyclegan`). The released pix2pix models are
    ``define_G(3, 3, 64, 'unet_256', norm='batch', use_dropout=True)``; the CycleGAN ones
    ``define_G(3, 3, 64, 'resnet_9blocks', norm='instance', use_dropout=False)``.
    ``init_type=None`` skips initialisation (e.g. before loading a checkpoint). Unlike upstream,
    no device placement or DataParallel wrapping is done.
    """
    norm_layer = get_norm_layer(norm)
    if netG in ("resnet_6blocks", "resnet_9blocks"):
        from baselines.cyclegan import ResnetGenerator  # cyclegan imports this module at top level

        n_blocks = 6 if netG == "resnet_6blocks" else 9
        net: nn.Module = ResnetGenerator(
            input_nc, output_nc, ngf, norm_layer=norm_layer, use_dropout=use_dropout, n_blocks=n_blocks
        )
    elif netG in ("unet_128", "unet_256"):
        num_downs = 7 if netG == "unet_128" else 8
        net = UnetGenerator(input_nc, output_nc, num_downs, ngf, norm_layer=norm_layer, use_dropout=use_dropout)
    else:
        raise ValueError(
            f"generator model name {netG!r} is not recognised; "
            "use 'unet_128', 'unet_256', 'resnet_6blocks' or 'resnet_9blocks'"
        )
    return init_weights(net, init_type, init_gain) if init_type is not None else net


def define_D(
    input_nc: int,
    ndf: int,
    netD: str,
    n_layers_D: int = 3,
    norm: str = "batch",
    init_type: str | None = "normal",
    init_gain: float = 0.02,
) -> nn.Module:
    """Build a discriminator by its official name: ``'basic'`` (70×70 PatchGAN, 3 layers) or
    ``'n_layers'`` (PatchGAN with ``n_layers_D`` layers). pix2pix uses ``input_nc = 6``
    (``cat(A, B)``), CycleGAN ``input_nc = 3``."""
    norm_layer = get_norm_layer(norm)
    if netD == "basic":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=3, norm_layer=norm_layer)
    elif netD == "n_layers":
        net = NLayerDiscriminator(input_nc, ndf, n_layers=n_layers_D, norm_layer=norm_layer)
    else:
        raise ValueError(f"discriminator model name {netD!r} is not recognised; use 'basic' or 'n_layers'")
    return init_weights(net, init_type, init_gain) if init_type is not None else net


# --------------------------------------------------------------------------------------
# Objective (paper §3.1): GAN loss, conditional GAN + λ·L1
# --------------------------------------------------------------------------------------


class GANLoss(nn.Module):
    """Adversarial loss on discriminator logits against a constant target map.

    * ``'vanilla'``: ``BCEWithLogits(pred, target)`` (the cross-entropy GAN objective, with the
      non-saturating generator loss since the generator is trained with ``target_is_real=True``).
    * ``'lsgan'``: ``MSE(pred, target)`` (least-squares GAN, used by CycleGAN).
    * ``'wgangp'``: ``-mean(pred)`` for real, ``mean(pred)`` for fake (no target).

    The target is ``real_label`` (default 1.0) or ``fake_label`` (0.0) broadcast to ``pred``'s
    shape; :meth:`get_target_tensor` returns it.
    """

    def __init__(self, gan_mode: str, target_real_label: float = 1.0, target_fake_label: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("real_label", torch.tensor(target_real_label))
        self.register_buffer("fake_label", torch.tensor(target_fake_label))
        self.gan_mode = gan_mode
        if gan_mode == "lsgan":
            self.loss: nn.Module | None = nn.MSELoss()
        elif gan_mode == "vanilla":
            self.loss = nn.BCEWithLogitsLoss()
        elif gan_mode == "wgangp":
            self.loss = None
        else:
            raise ValueError(f"gan mode {gan_mode!r} is not implemented; use 'vanilla', 'lsgan' or 'wgangp'")

    def get_target_tensor(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        label = self.real_label if target_is_real else self.fake_label
        return label.to(prediction.dtype).expand_as(prediction)

    def forward(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        if self.loss is not None:
            return self.loss(prediction, self.get_target_tensor(prediction, target_is_real))
        return -prediction.mean() if target_is_real else prediction.mean()


def discriminator_loss(
    netD: nn.Module, real: torch.Tensor, fake: torch.Tensor, criterionGAN: GANLoss
) -> dict[str, torch.Tensor]:
    """``loss_D = 0.5 · (GAN(D(real), real) + GAN(D(fake.detach()), fake))``.

    The 0.5 slows D relative to G (paper §3.3). ``fake`` is detached so no gradient reaches G.
    Returns ``{'D_real', 'D_fake', 'D'}``.
    """
    loss_D_real = criterionGAN(netD(real), True)
    loss_D_fake = criterionGAN(netD(fake.detach()), False)
    return {"D_real": loss_D_real, "D_fake": loss_D_fake, "D": (loss_D_real + loss_D_fake) * 0.5}


def pix2pix_discriminator_loss(
    netD: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor, fake_B: torch.Tensor, criterionGAN: GANLoss
) -> dict[str, torch.Tensor]:
    """Conditional D loss: D sees ``cat(real_A, real_B)`` vs ``cat(real_A, fake_B)`` (channels).

    pix2pix uses no image pool (``pool_size=0``). Returns ``{'D_real', 'D_fake', 'D'}``.
    """
    return discriminator_loss(netD, torch.cat([real_A, real_B], 1), torch.cat([real_A, fake_B], 1), criterionGAN)


def pix2pix_generator_loss(
    netD: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    fake_B: torch.Tensor,
    criterionGAN: GANLoss,
    lambda_L1: float = 100.0,
) -> dict[str, torch.Tensor]:
    """``loss_G = GAN(D(cat(real_A, fake_B)), real) + λ_L1 · ‖fake_B − real_B‖₁`` (mean), λ_L1 = 100.

    ``fake_B = G(real_A)``. pix2pix trains with ``GANLoss('vanilla')``. Returns
    ``{'G_GAN', 'G_L1', 'G'}``.
    """
    loss_G_GAN = criterionGAN(netD(torch.cat([real_A, fake_B], 1)), True)
    loss_G_L1 = nn.functional.l1_loss(fake_B, real_B) * lambda_L1
    return {"G_GAN": loss_G_GAN, "G_L1": loss_G_L1, "G": loss_G_GAN + loss_G_L1}


# --------------------------------------------------------------------------------------
# Optimisation: history of generated images, learning-rate schedule
# --------------------------------------------------------------------------------------


class ImagePool:
    """Buffer of previously generated images (Shrivastava et al., 2017), used by CycleGAN's D.

    ``query(images)`` walks the batch one image at a time. While the pool holds fewer than
    ``pool_size`` images, the image is stored and returned. Once full, with probability 1/2
    (``rng.uniform(0, 1) > 0.5``) a uniformly chosen stored image (``rng.randint(0,
    pool_size - 1)``) is returned and replaced by the new one; otherwise the new image is
    returned unchanged. ``pool_size=0`` returns the batch as is. Images are stored detached.

    ``rng`` defaults to Python's global :mod:`random` module, as upstream; pass a
    ``random.Random`` for reproducible runs.
    """

    def __init__(self, pool_size: int = 50, rng: random.Random | None = None) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        self.rng = rng if rng is not None else random
        self.num_imgs = 0
        self.images: list[torch.Tensor] = []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return images
        returned = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if self.num_imgs < self.pool_size:
                self.num_imgs += 1
                self.images.append(image)
                returned.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                idx = self.rng.randint(0, self.pool_size - 1)
                returned.append(self.images[idx].clone())
                self.images[idx] = image
            else:
                returned.append(image)
        return torch.cat(returned, 0)


def linear_decay_lambda(n_epochs: int, n_epochs_decay: int, epoch_count: int = 1) -> Callable[[int], float]:
    """The official ``lr_policy='linear'`` multiplier for ``torch.optim.lr_scheduler.LambdaLR``.

    ``λ(epoch) = 1 − max(0, epoch + epoch_count − n_epochs) / (n_epochs_decay + 1)``, with
    ``epoch`` the scheduler's 0-based step count: the rate is constant for ``n_epochs`` epochs,
    then decays linearly towards zero over ``n_epochs_decay`` epochs (defaults 100 + 100).
    ``epoch_count`` is the 1-based epoch training (re)starts from.
    """
    if n_epochs < 0 or n_epochs_decay < 0:
        raise ValueError(f"n_epochs and n_epochs_decay must be >= 0, got {n_epochs} and {n_epochs_decay}")

    def lambda_rule(epoch: int) -> float:
        return 1.0 - max(0, epoch + epoch_count - n_epochs) / float(n_epochs_decay + 1)

    return lambda_rule


# --------------------------------------------------------------------------------------
# Inference: test-time behaviour of BatchNorm and Dropout
# --------------------------------------------------------------------------------------

TEST_MODES = ("eval", "official-default", "batchstats-no-dropout")


def set_test_mode(net: nn.Module, mode: str) -> nn.Module:
    """Set how BatchNorm and Dropout behave at inference; returns ``net`` (changed in place).

    * ``'eval'``: ``net.eval()``. BatchNorm uses its running statistics, Dropout is off.
      Deterministic. What the official ``test.py`` does only with ``--eval``.
    * ``'official-default'``: ``net.train()``. What the official ``test.py`` does by default
      (and what the pix2pix paper describes, §3.3): BatchNorm normalises with the statistics of
      the test batch (biased variance; at batch size 1 this acts like instance norm) and Dropout
      stays active, so outputs are random (seed ``torch`` for repeatability). As upstream,
      every forward pass in this mode also updates the BatchNorm running statistics.
    * ``'batchstats-no-dropout'``: ``net.train()`` then every ``nn.Dropout`` ``.eval()``: the
      deterministic part of the official default (batch statistics, no dropout noise).

    For InstanceNorm networks without dropout (CycleGAN) all three modes give the same output.
    """
    if mode == "eval":
        return net.eval()
    if mode == "official-default":
        return net.train()
    if mode == "batchstats-no-dropout":
        net.train()
        for m in net.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        return net
    raise ValueError(f"unknown test mode {mode!r}; use one of {TEST_MODES}")


# --------------------------------------------------------------------------------------
# Official checkpoints (.pth state dicts of the bare generator)
# --------------------------------------------------------------------------------------

_MODULE_PREFIX = "module."


def read_state_dict(path_or_sd: str | os.PathLike | Mapping[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Read a state dict safely and return a fresh ``OrderedDict`` **without** ``_metadata``.

    Files: ``.safetensors`` via safetensors, anything else via
    ``torch.load(weights_only=True, map_location='cpu')``; a pickle that needs arbitrary objects
    is refused with a ``ValueError`` (nothing in it is executed). Dropping ``_metadata`` is the
    official ``del state_dict._metadata`` step: without version metadata, torch fills a missing
    BatchNorm ``num_batches_tracked`` (pre-0.4 checkpoints) with 0 instead of failing.
    """
    if isinstance(path_or_sd, Mapping):
        raw = path_or_sd
        source = "the given state dict"
    else:
        path = os.fspath(path_or_sd)
        source = path
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            raw = load_file(path, device="cpu")
        else:
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
            except pickle.UnpicklingError as err:
                raise ValueError(
                    f"refusing to load {path}: it is not a plain tensor state dict and would need unsafe "
                    f"unpickling (torch.load weights_only=True failed: {str(err).splitlines()[0]}). Official "
                    "pix2pix/CycleGAN .pth files are plain state dicts; convert this file to one (or to "
                    "safetensors) in a trusted environment."
                ) from err
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source} holds a {type(raw).__name__}, expected a state dict mapping names to tensors")
    bad = [k for k, v in raw.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        hint = " (it looks like a training checkpoint: pass its 'state_dict' entry)" if "state_dict" in raw else ""
        raise ValueError(f"{source} is not a plain state dict: entries {bad[:5]} are not name → tensor{hint}")
    return OrderedDict(raw.items())  # a new OrderedDict carries no _metadata attribute


def patch_instance_norm_state_dict(state_dict: "OrderedDict[str, torch.Tensor]", net: nn.Module) -> list[str]:
    """The official InstanceNorm compatibility rule (checkpoints from before PyTorch 0.4 / 2018).

    For every key whose owning module is an InstanceNorm layer, delete ``running_mean`` /
    ``running_var`` where the module holds ``None`` (``track_running_stats=False``), and delete
    ``num_batches_tracked`` always. Keys whose module does not exist in ``net`` are left for the
    strict check to report. Edits ``state_dict`` in place; returns the deleted keys.
    """
    removed = []
    for key in list(state_dict):
        module_path, _, leaf = key.rpartition(".")
        try:
            module = net.get_submodule(module_path)
        except AttributeError:
            continue
        if not isinstance(module, nn.modules.instancenorm._InstanceNorm):
            continue
        stale_stat = leaf in ("running_mean", "running_var") and getattr(module, leaf, None) is None
        if stale_stat or leaf == "num_batches_tracked":
            del state_dict[key]
            removed.append(key)
    return removed


def _fillable_keys(net: nn.Module) -> set[str]:
    """``num_batches_tracked`` keys that torch fills in (with 0) when absent and there is no metadata."""
    return {
        f"{name}.num_batches_tracked" if name else "num_batches_tracked"
        for name, m in net.named_modules()
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
    }


def load_official_state_dict(
    path_or_sd: str | os.PathLike | Mapping[str, torch.Tensor],
    net: nn.Module,
    strip_module_prefix: bool = False,
) -> nn.Module:
    """Load an official pix2pix/CycleGAN checkpoint into ``net`` strictly, as ``load_networks`` does.

    Steps: safe read (:func:`read_state_dict`, drops ``_metadata``) → optional ``module.`` strip →
    InstanceNorm patch (:func:`patch_instance_norm_state_dict`) → check names and shapes →
    ``net.load_state_dict(strict=True)``. Official files are saved from the bare module and have
    no ``module.`` prefix; a prefixed state dict (saved from a ``DataParallel`` wrapper) raises
    ``ValueError`` unless ``strip_module_prefix=True``, which removes it from every key.

    On a mismatch (e.g. a ``resnet_6blocks`` file for a ``resnet_9blocks`` net, or a U-Net file
    for a ResNet) a ``ValueError`` names the first missing and unexpected keys and the first
    shape mismatches; ``net`` is left untouched. Returns ``net``.
    """
    state_dict = read_state_dict(path_or_sd)

    prefixed = [k for k in state_dict if k.startswith(_MODULE_PREFIX)]
    if prefixed:
        if not strip_module_prefix:
            raise ValueError(
                f"checkpoint keys carry a '{_MODULE_PREFIX}' prefix (e.g. {prefixed[0]!r}), so it was saved "
                "from a DataParallel wrapper, not as the official bare-module state dict; pass "
                "strip_module_prefix=True to remove the prefix"
            )
        if len(prefixed) != len(state_dict):
            other = next(k for k in state_dict if not k.startswith(_MODULE_PREFIX))
            raise ValueError(f"only some checkpoint keys carry the '{_MODULE_PREFIX}' prefix (e.g. not {other!r})")
        state_dict = OrderedDict((k[len(_MODULE_PREFIX) :], v) for k, v in state_dict.items())

    patch_instance_norm_state_dict(state_dict, net)

    expected = net.state_dict()
    fillable = _fillable_keys(net)
    missing = [k for k in expected if k not in state_dict and k not in fillable]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = [f"checkpoint does not match {type(net).__name__} (wrong generator/discriminator or options?)"]
        if missing:
            parts.append(f"{len(missing)} missing keys, first: {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, first: {unexpected[:5]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches, first: {mismatched[:5]}")
        raise ValueError("; ".join(parts))

    net.load_state_dict(state_dict, strict=True)
    return net


# --------------------------------------------------------------------------------------
# cgmbench generator (``--model pix2pix``) and the pieces CycleGAN's generator shares
# --------------------------------------------------------------------------------------
#
# A pix2pix/CycleGAN generator has no guidance: a GAN maps the source image to one output.
# The only sampling setting is ``test_mode`` (how BatchNorm and Dropout behave at inference,
# :func:`set_test_mode`). In ``official-default`` pix2pix's dropout is its only source of
# sample diversity (paper §3.3), so it is the knob that exists for guidance/diversity plots.

import json as _json
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from cgmbench.errors import CgmbenchError
from cgmbench.generator import CheckpointInfo, Generator, Knob, to_uint8
from cgmbench.seeding import derive_seed, numpy_rng, torch_generator

__all__ += [
    "build_generator",
    "generator_stride",
    "TranslationGenerator",
    "Pix2PixGenerator",
]

#: how the released pix2pix generators are built (``define_G`` arguments)
PIX2PIX_OFFICIAL_ARCH = {"netG": "unet_256", "ngf": 64, "norm": "batch", "use_dropout": True}


def build_generator(arch: Mapping) -> nn.Module:
    """A generator from an architecture dict, without initialisation (weights are loaded next).

    ``arch['netG']`` is an official name (``unet_128``, ``unet_256``, ``resnet_6blocks``,
    ``resnet_9blocks``; see :func:`define_G`) or ``'unet'`` with ``num_downs`` / ``'resnet'``
    with ``n_blocks`` (the small networks cgmbench trains). Other keys: ``ngf``, ``norm``,
    ``use_dropout``, ``input_nc``/``output_nc`` (default 3).
    """
    netG = arch["netG"]
    norm, ngf = arch.get("norm", "batch"), int(arch.get("ngf", 64))
    use_dropout = bool(arch.get("use_dropout", False))
    input_nc, output_nc = int(arch.get("input_nc", 3)), int(arch.get("output_nc", 3))
    if netG == "unet":
        return UnetGenerator(input_nc, output_nc, int(arch["num_downs"]), ngf, get_norm_layer(norm), use_dropout)
    if netG == "resnet":
        from baselines.cyclegan import ResnetGenerator

        return ResnetGenerator(input_nc, output_nc, ngf, get_norm_layer(norm), use_dropout, int(arch["n_blocks"]))
    return define_G(input_nc, output_nc, ngf, netG, norm=norm, use_dropout=use_dropout, init_type=None)


def generator_stride(arch: Mapping) -> int:
    """The side an input must be a multiple of: ``2**num_downs`` for a U-Net, 4 for a ResNet."""
    netG = arch["netG"]
    if netG.startswith("unet"):
        downs = {"unet_128": 7, "unet_256": 8}.get(netG) or int(arch["num_downs"])
        return 2**downs
    return 4


@contextmanager
def inference_behaviour(net: nn.Module, mode: str, generator: torch.Generator | None = None):
    """Run ``net`` in test mode ``mode`` (:func:`set_test_mode`) without side effects.

    Differences from a bare :func:`set_test_mode`:

    * BatchNorm layers that normalise with batch statistics do **not** update their running
      statistics (upstream's test.py does; here a run must not change the model it measures).
    * With ``generator`` given in ``'official-default'``, every Dropout draws its mask from
      ``generator`` (in forward order, ``bernoulli(1 - p)`` scaled by ``1 / (1 - p)``, as
      ``F.dropout``) instead of the global torch RNG, so a sample's noise comes from its seed.

    On exit ``net`` is back in eval mode.
    """
    set_test_mode(net, mode)
    bn = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    tracked = [m.track_running_stats for m in bn]
    hooks = []
    try:
        for m in bn:
            m.track_running_stats = False  # training-mode BN then uses batch stats and leaves buffers alone
        if mode == "official-default" and generator is not None:
            for m in net.modules():
                if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
                    m.eval()  # identity; the hook below applies the seeded mask

                    def apply_mask(module, inputs, output, g=generator):
                        keep = 1.0 - module.p
                        if keep <= 0:
                            return torch.zeros_like(output)
                        mask = torch.empty_like(output).bernoulli_(keep, generator=g)
                        return output * mask / keep

                    hooks.append(m.register_forward_hook(apply_mask))
        yield net
    finally:
        for h in hooks:
            h.remove()
        for m, t in zip(bn, tracked):
            m.track_running_stats = t
        net.eval()


def _file_arch(path: Path) -> tuple[dict | None, dict]:
    """Architecture and metadata that cgmbench stores in its safetensors files (None for others)."""
    if path.suffix != ".safetensors":
        return None, {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # not a safetensors file at all
        raise CgmbenchError(f"cannot read {path} as safetensors: {type(e).__name__}: {e}") from None
    arch = _json.loads(meta["cgmbench.architecture"]) if "cgmbench.architecture" in meta else None
    return arch, meta


class TranslationGenerator(Generator):
    """Base of the image-to-image GAN generators (pix2pix, CycleGAN).

    Input: ``conditions.images`` uint8 ``[B, 3, H, W]`` with ``(H, W)`` the model resolution.
    They are mapped to the networks' ``[-1, 1]`` convention (``x / 127.5 - 1``, as
    ``transforms.Normalize((0.5,) * 3, (0.5,) * 3)`` after ``ToTensor``) and the output back to
    uint8 with rounding (:func:`cgmbench.generator.to_uint8`).

    ``test_mode``:

    * ``eval``: running BatchNorm statistics, no dropout. Deterministic, batched, and
      independent of the batch (the default).
    * ``official-default``: what upstream ``test.py`` does without ``--eval`` (and what mmagic
      used for its FID of the official checkpoints): BatchNorm normalises with the statistics of
      the test batch and dropout is on. Batch statistics depend on the batch by definition, so
      this mode runs every sample alone (batch size 1, as ``test.py``); sample ``i``'s dropout
      masks come from ``torch_generator(seeds[i])``. Output ``i`` depends on source ``i`` and
      ``seeds[i]`` only.
    * ``batchstats-no-dropout``: batch statistics without dropout, one sample at a time:
      deterministic.

    For InstanceNorm networks without dropout (CycleGAN) the three modes agree.
    """

    condition_kinds = frozenset({"image"})
    knobs = (
        Knob("test_mode", "eval", "inference behaviour of BatchNorm/Dropout: eval (running stats, no dropout), "
             "official-default (test-batch stats + dropout, per-sample seeded, batch of 1, as upstream test.py "
             "without --eval), batchstats-no-dropout", kind="choice", choices=TEST_MODES),
    )
    #: prefix of the KnownFile names (``pix2pix:facades_label2photo``)
    family: str = "pix2pix"
    official_arch: dict = PIX2PIX_OFFICIAL_ARCH
    #: official checkpoints (KnownFile ``family:name``)
    official_variants: tuple[str, ...] = ()
    #: variant -> (shipped file, description)
    shipped_variants: dict[str, tuple[str, str]] = {}

    def __init__(self, net: nn.Module, resolution: tuple[int, int], checkpoint: CheckpointInfo | None = None,
                 device: str = "cpu", arch: Mapping | None = None):
        super().__init__(resolution, checkpoint=checkpoint, device=device)
        self.net = net.to(device).eval()
        self.arch = dict(arch) if arch else None

    # -- checkpoints --------------------------------------------------------------------

    @classmethod
    def variants(cls) -> dict[str, str]:
        from cgmbench.weights import known_files

        out = {name: desc for name, (_, desc) in cls.shipped_variants.items()}
        files = known_files()
        for name in cls.official_variants:
            kf = files.get(f"{cls.family}:{name}")
            out[name] = kf.description if kf else f"official {cls.family} checkpoint {name}"
        return out

    @classmethod
    def load(cls, task, variant: str | None = None, checkpoint: str | None = None,
             device: str = "cpu") -> "TranslationGenerator":
        from cgmbench.weights import known_file, resolve, sha256_file, shipped

        if checkpoint is not None:
            path = Path(checkpoint)
            if not path.is_file():
                raise CgmbenchError(f"checkpoint file {path} does not exist")
            arch, meta = _file_arch(path)
            arch = arch or cls.official_arch
            info = CheckpointInfo(name=path.name, sha256=sha256_file(path), path=str(path), source="file")
        elif variant is None:
            raise CgmbenchError(f"task {task.name} names no default {cls.family} checkpoint",
                                f"choose one with --model {cls.family}:VARIANT ({', '.join(cls.variants())}) "
                                "or --checkpoint FILE")
        elif variant in cls.shipped_variants:
            path, digest = shipped(cls.shipped_variants[variant][0])
            arch, meta = _file_arch(path)
            info = CheckpointInfo(name=variant, sha256=digest, path=str(path), source="shipped")
        elif variant in cls.official_variants:
            path, digest = resolve(f"{cls.family}:{variant}")
            arch, meta = dict(cls.official_arch), {}
            info = CheckpointInfo(name=variant, sha256=digest, path=str(path), source=known_file(
                f"{cls.family}:{variant}").url)
        else:
            raise CgmbenchError(f"unknown {cls.family} checkpoint {variant!r}",
                                f"known: {', '.join(cls.variants())}")
        if arch is None:
            raise CgmbenchError(f"{path} carries no cgmbench architecture metadata")
        res = int(task.resolution)
        trained = meta.get("cgmbench.resolution")
        if trained is not None and int(trained) != res:
            raise CgmbenchError(f"{cls.family} checkpoint {info.name} was trained at {trained}x{trained}, "
                                f"task {task.name} is {res}x{res}", "use a checkpoint trained for this task")
        stride = generator_stride(arch)
        if res % stride:
            raise CgmbenchError(f"{cls.family} generator {arch['netG']} needs a resolution divisible by {stride}; "
                                f"task {task.name} has {res}")
        net = build_generator(arch)
        try:
            load_official_state_dict(path, net)
        except (ValueError, FileNotFoundError) as e:
            raise CgmbenchError(f"{path} is not a {cls.family} generator checkpoint ({arch['netG']}, "
                                f"norm={arch.get('norm')}): {e}",
                                f"{cls.family} expects the generator state dict (latest_net_G.pth)") from None
        info.extra.update({"architecture": dict(arch), "format": "official state dict" if
                           path.suffix != ".safetensors" else "safetensors"})
        return cls(net, (res, res), checkpoint=info, device=device, arch=arch)

    # -- sampling -----------------------------------------------------------------------

    def source_images(self, conditions) -> torch.Tensor:
        """``conditions.images`` checked and mapped to float ``[-1, 1]`` on the model's device."""
        images = conditions.images
        if images is None:
            raise CgmbenchError(f"{self.name} translates images: the conditions hold no source images")
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise CgmbenchError(f"{self.name} needs RGB source images uint8 [B, 3, H, W], got {shape}",
                                "convert grey or RGBA sources to 3-channel RGB")
        if images.dtype != torch.uint8:
            raise CgmbenchError(f"{self.name} needs uint8 source images, got {images.dtype}")
        h, w = images.shape[-2:]
        if (h, w) != self.resolution:
            raise CgmbenchError(f"source images are {h}x{w}, but this {self.name} model works at "
                                f"{self.resolution[0]}x{self.resolution[1]}",
                                "resize the sources to the task resolution (the loaders do)")
        return images.to(self.device).float() / 127.5 - 1.0

    @torch.no_grad()
    def generate(self, conditions, seeds: Sequence[int], test_mode: str = "eval") -> torch.Tensor:
        x = self.source_images(conditions)
        if len(seeds) != len(x):
            raise CgmbenchError(f"{len(seeds)} seeds for {len(x)} source images")
        if test_mode not in TEST_MODES:
            raise CgmbenchError(f"knob test_mode={test_mode!r} is not one of {list(TEST_MODES)}")
        if test_mode == "eval":
            with inference_behaviour(self.net, "eval"):
                out = self.net(x)
        else:
            outs = []
            for i, seed in enumerate(seeds):
                g = torch_generator(seed, self.device) if test_mode == "official-default" else None
                with inference_behaviour(self.net, test_mode, g):
                    outs.append(self.net(x[i:i + 1]))
            out = torch.cat(outs)
        return to_uint8(out).cpu()


class Pix2PixGenerator(TranslationGenerator):
    """pix2pix for cgmbench: the U-Net generator of a released checkpoint or a shipped tiny one."""

    description = ("pix2pix (Isola et al. 2017): U-Net generator trained with cGAN + L1. A GAN has no guidance; "
                   "test_mode=official-default samples dropout noise (per-sample seeded), the only "
                   "diversity knob pix2pix has.")
    family = "pix2pix"
    official_arch = PIX2PIX_OFFICIAL_ARCH
    official_variants = ("facades_label2photo", "edges2shoes", "sat2map", "map2sat", "day2night")
    shipped_variants = {
        "shapes-paired-tiny": ("pix2pix-shapes-paired-tiny.safetensors",
                               "tiny U-Net (5 levels) trained by cgmbench on shapes-paired, 32x32"),
    }

    @classmethod
    def train(cls, task, config: str = "tiny", out: str | os.PathLike = "pix2pix-train", resume: bool = False,
              steps: int | None = None, seed: int = 0, device: str = "cpu", log=print) -> Path:
        """Train pix2pix on ``task`` with recipe ``config``; see :class:`_Trainer`. Returns the generator file."""
        return TranslationTrainer.make("pix2pix", task, config, out, resume, steps, seed, device, log).run()


# --------------------------------------------------------------------------------------
# Training recipes (``cgmbench train --model pix2pix --task shapes-paired --config tiny``)
# --------------------------------------------------------------------------------------

#: pix2pix recipes. ``tiny``: the official objective and optimiser (vanilla cGAN + 100·L1,
#: PatchGAN on cat(A, B), Adam 2e-4 β1 0.5, constant LR then linear decay over the last half)
#: with small networks on the 32×32 shapes world; trains in minutes on two CPU cores (about 8
#: CPU-minutes for 1,000 steps of batch 16, i.e. 8 epochs of 2,000 pairs). The 5-level U-Net has
#: no dropout (upstream puts it only in the 8·ngf levels beyond the fifth), so for this model
#: ``official-default`` equals ``batchstats-no-dropout``; batch 16 instead of upstream's 1.
PIX2PIX_CONFIGS: dict[str, dict] = {
    "tiny": {
        "tasks": ("shapes-paired",),
        "generator": {"netG": "unet", "num_downs": 5, "ngf": 12, "norm": "batch", "use_dropout": False},
        "export_dtype": "float16",
        "netD": "n_layers", "n_layers_D": 2, "ndf": 16, "norm_D": "batch",
        "gan_mode": "vanilla", "lambda_L1": 100.0,
        "lr": 2e-4, "beta1": 0.5, "decay_fraction": 0.5,
        "batch_size": 16, "steps": 1000, "num_train": 2000,
        "save_every": 500, "log_every": 50,
        "init_type": "normal", "init_gain": 0.02,
    },
}


def set_requires_grad(nets: Sequence[nn.Module], requires_grad: bool) -> None:
    """Freeze or unfreeze networks (the official ``set_requires_grad``: D is frozen for the G step)."""
    for net in nets:
        for p in net.parameters():
            p.requires_grad_(requires_grad)


class TranslationTrainer:
    """Shared training loop of the pix2pix and CycleGAN recipes.

    Files in ``out``:

    * ``checkpoints/step_NNNNNN.safetensors``: every network (``<name>.<key>``);
      ``checkpoints/step_NNNNNN.pt``: optimiser states (and image pools), saved from plain
      tensors and containers and read back with ``torch.load(weights_only=True)``;
      ``checkpoints/latest.json``: the step of the newest pair. The two newest pairs are kept.
    * ``loss_log.jsonl``: one row per ``log_every`` steps, losses averaged over the window.
    * ``generator.safetensors``: the final generator (floats in the recipe's ``export_dtype``)
      with its architecture in the metadata (what :meth:`TranslationGenerator.load` reads);
      ``train_summary.json``.

    Determinism: everything random in step ``s`` (the global torch RNG for dropout, the data
    order, the pool's coin flips) is seeded from ``derive_seed(model, 'train', seed, s, ...)``,
    so ``--resume`` from any checkpoint continues exactly as an uninterrupted run would (on
    the same machine and thread count; CPU float sums are not bitwise stable across them).
    """

    model_name = "pix2pix"
    configs: dict[str, dict] = PIX2PIX_CONFIGS

    def __init__(self, task, config: str, out, resume: bool, steps: int | None, seed: int, device: str, log):
        if config not in self.configs:
            raise CgmbenchError(f"{self.model_name} has no training recipe {config!r}",
                                f"recipes: {', '.join(self.configs)}")
        self.cfg = dict(self.configs[config])
        if task.name not in self.cfg["tasks"]:
            raise CgmbenchError(f"the {self.model_name} recipe {config!r} is for task(s) {list(self.cfg['tasks'])}, "
                                f"not {task.name}")
        if steps is not None:
            if steps < 1:
                raise CgmbenchError(f"--steps must be >= 1, got {steps}")
            self.cfg["steps"] = int(steps)
        self.task, self.config_name, self.out = task, config, Path(out)
        self.resume, self.seed, self.device, self.log = resume, int(seed), device, log
        self.res = int(task.resolution)

    @staticmethod
    def make(model_name: str, *args) -> "TranslationTrainer":
        if model_name == "cyclegan":
            from baselines.cyclegan import CycleGANTrainer

            return CycleGANTrainer(*args)
        return Pix2PixTrainer(*args)

    # -- pieces a recipe defines ---------------------------------------------------------

    def build(self) -> None:
        """Create ``self.nets`` (name -> module) and ``self.optimizers`` (name -> Adam)."""
        raise NotImplementedError

    def load_data(self) -> None:
        raise NotImplementedError

    def train_step(self, step: int) -> dict[str, float]:
        raise NotImplementedError

    def export_name(self) -> str:
        return "G"

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    # -- shared helpers ------------------------------------------------------------------

    def rng_seed(self, *parts) -> int:
        return derive_seed(self.model_name, "train", self.seed, *parts)

    def to_net(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.device).float() / 127.5 - 1.0

    def epoch_indices(self, step: int, n: int) -> np.ndarray:
        """Rows of batch ``step``: a fresh permutation of the ``n`` items each epoch (``drop_last``)."""
        bs = self.cfg["batch_size"]
        per_epoch = max(1, n // bs)
        epoch, k = divmod(step, per_epoch)
        perm = numpy_rng(self.rng_seed("epoch", epoch)).permutation(n)
        return perm[k * bs:(k + 1) * bs]

    def adam(self, params) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=self.cfg["lr"], betas=(self.cfg["beta1"], 0.999))

    def lr_at(self, step: int) -> float:
        """Official ``linear`` policy with steps as epochs: constant, then linear decay to ~0."""
        total = self.cfg["steps"]
        n_decay = int(round(total * self.cfg["decay_fraction"]))
        return self.cfg["lr"] * linear_decay_lambda(total - n_decay, n_decay)(step)

    # -- checkpoints ---------------------------------------------------------------------

    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self, step: int) -> None:
        from safetensors.torch import save_file

        from cgmbench.atomic import atomic_write_json

        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{k}": v.detach().cpu().contiguous()
                   for name, net in self.nets.items() for k, v in net.state_dict().items()}
        stem = f"step_{step:06d}"
        save_file(tensors, str(self.ckpt_dir / f"{stem}.safetensors"))
        state = {"optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()}, **self.extra_state()}
        torch.save(state, self.ckpt_dir / f"{stem}.pt")
        atomic_write_json(self.ckpt_dir / "latest.json", {
            "step": step, "weights": f"{stem}.safetensors", "state": f"{stem}.pt", "model": self.model_name,
            "config": self.config_name, "seed": self.seed, "steps": self.cfg["steps"]})
        for old in sorted(self.ckpt_dir.glob("step_*.safetensors"))[:-2]:
            old.unlink()
            old.with_suffix(".pt").unlink(missing_ok=True)

    def restore(self) -> int:
        """Load the newest checkpoint; returns the number of steps already done (0 if none)."""
        from safetensors.torch import load_file

        latest = self.ckpt_dir / "latest.json"
        if not latest.is_file():
            if self.resume:
                self.log(f"{self.out}: no checkpoint yet, starting from step 0")
            return 0
        meta = _json.loads(latest.read_text())
        if not self.resume:
            raise CgmbenchError(f"{self.out} already holds a training run (step {meta['step']})",
                                "continue it with --resume, or choose another --out")
        if (meta.get("model"), meta.get("config"), meta.get("seed")) != (self.model_name, self.config_name, self.seed):
            raise CgmbenchError(f"{self.out} holds a {meta.get('model')} run with config {meta.get('config')!r} "
                                f"and seed {meta.get('seed')}", "--resume continues only the same model, config "
                                "and seed")
        tensors = load_file(str(self.ckpt_dir / meta["weights"]), device="cpu")
        for name, net in self.nets.items():
            sd = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            net.load_state_dict(sd, strict=True)
        state = torch.load(self.ckpt_dir / meta["state"], map_location=self.device, weights_only=True)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.load_extra_state(state)
        self.log(f"{self.out}: resumed at step {meta['step']}")
        return int(meta["step"])

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Path:
        import time

        from safetensors.torch import save_file

        from cgmbench.atomic import atomic_write_json
        from cgmbench.weights import sha256_file

        cfg = self.cfg
        if cfg["save_every"] % cfg["log_every"]:
            raise ValueError("save_every must be a multiple of log_every (log windows restart at checkpoints)")
        t0, cpu0 = time.perf_counter(), time.process_time()
        torch.manual_seed(self.rng_seed("init"))
        self.build()
        for net in self.nets.values():
            net.to(self.device).train()
        start = self.restore()
        self.load_data()
        log_path = self.out / "loss_log.jsonl"
        rows = []
        if log_path.is_file():  # keep the rows up to the checkpoint: the log equals an uninterrupted run's
            rows = [r for r in map(_json.loads, log_path.read_text().splitlines()) if r["step"] <= start]
        self.out.mkdir(parents=True, exist_ok=True)
        log_path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
        window: dict[str, float] = {}
        count = 0
        for step in range(start, cfg["steps"]):
            lr = self.lr_at(step)
            for opt in self.optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = lr
            torch.manual_seed(self.rng_seed("step", step))
            losses = self.train_step(step)
            for k, v in losses.items():
                window[k] = window.get(k, 0.0) + v
            count += 1
            done = step + 1
            if done % cfg["log_every"] == 0 or done == cfg["steps"]:
                row = {"step": done, "lr": lr, **{k: round(v / count, 6) for k, v in window.items()}}
                with open(log_path, "a") as f:
                    f.write(_json.dumps(row) + "\n")
                self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
                rows.append(row)
                window, count = {}, 0
            if done % cfg["save_every"] == 0 or done == cfg["steps"]:
                self.save_checkpoint(done)

        net = self.nets[self.export_name()]
        path = self.out / "generator.safetensors"
        meta = {"cgmbench.architecture": _json.dumps(cfg["generator"], sort_keys=True),
                "cgmbench.resolution": str(self.res), "cgmbench.model": self.model_name,
                "cgmbench.task": self.task.name, "cgmbench.config": self.config_name,
                "cgmbench.steps": str(cfg["steps"]), "cgmbench.seed": str(self.seed)}
        dtype = getattr(torch, cfg.get("export_dtype", "float32"))
        save_file({k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in net.state_dict().items()}, str(path), metadata=meta)
        atomic_write_json(self.out / "train_summary.json", {
            "model": self.model_name, "task": self.task.name, "config": self.config_name, "seed": self.seed,
            "steps": cfg["steps"], "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "final_losses": rows[-1] if rows else None, "generator": path.name, "sha256": sha256_file(path),
            "command": (f"cgmbench train --model {self.model_name} --task {self.task.name} --config "
                        f"{self.config_name} --seed {self.seed} --out OUT"),
            "seconds_this_session": round(time.perf_counter() - t0, 1),
            "cpu_seconds_this_session": round(time.process_time() - cpu0, 1), "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        })
        return path


class Pix2PixTrainer(TranslationTrainer):
    """pix2pix (paper §3.3): per step, ``fake_B = G(A)``; D step on ``cat(A, B)`` vs ``cat(A, fake_B)``;
    then G step on ``GAN(D(cat(A, fake_B)), real) + λ_L1·‖fake_B − B‖₁``."""

    model_name = "pix2pix"
    configs = PIX2PIX_CONFIGS

    def build(self) -> None:
        cfg = self.cfg
        G = init_weights(build_generator(cfg["generator"]), cfg["init_type"], cfg["init_gain"])
        D = define_D(6, cfg["ndf"], cfg["netD"], cfg["n_layers_D"], cfg["norm_D"], cfg["init_type"], cfg["init_gain"])
        self.nets = {"G": G, "D": D}
        self.optimizers = {"G": self.adam(G.parameters()), "D": self.adam(D.parameters())}
        self.criterionGAN = GANLoss(cfg["gan_mode"]).to(self.device)

    def load_data(self) -> None:
        self.A, self.B = paired_training_data(self.task, self.cfg["num_train"])

    def train_step(self, step: int) -> dict[str, float]:
        G, D = self.nets["G"], self.nets["D"]
        idx = torch.from_numpy(self.epoch_indices(step, len(self.A)))
        real_A, real_B = self.to_net(self.A[idx]), self.to_net(self.B[idx])
        fake_B = G(real_A)
        set_requires_grad([D], True)
        self.optimizers["D"].zero_grad()
        d = pix2pix_discriminator_loss(D, real_A, real_B, fake_B, self.criterionGAN)
        d["D"].backward()
        self.optimizers["D"].step()
        set_requires_grad([D], False)
        self.optimizers["G"].zero_grad()
        g = pix2pix_generator_loss(D, real_A, real_B, fake_B, self.criterionGAN, self.cfg["lambda_L1"])
        g["G"].backward()
        self.optimizers["G"].step()
        return {"G_GAN": g["G_GAN"].item(), "G_L1": g["G_L1"].item(), "D_real": d["D_real"].item(),
                "D_fake": d["D_fake"].item()}


def paired_training_data(task, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A, B)`` uint8 ``[n, 3, H, W]`` of the task's train split: conditions and their true targets."""
    from cgmbench.sources import open_source

    src = open_source(task, "conditions", split="train")
    idx = list(range(min(n, len(src))))
    A = src.conditions(idx).images
    B = torch.from_numpy(np.ascontiguousarray(src.references(idx)))
    return A.contiguous(), B.contiguous()
