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
