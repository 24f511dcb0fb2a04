"""pix2pix (Isola et al., 2017): U-Net generator, PatchGAN discriminator, cGAN + L1 objective.

A clean-room implementation of the networks of junyanz/pytorch-CycleGAN-and-pix2pix
(``models/networks.py``) with the official module names and ``nn.Sequential`` layouts, so the
released ``.pth`` generators load with ``strict=True``. This module also holds the pieces
that CycleGAN shares (norm layers, PatchGAN, GAN loss, image pool, LR schedule, the official
checkpoint loader, test-time modes); CycleGAN's ResNet generator and losses are here too.

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
import random
from collections.abc import Mapping
from typing import Callable

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
    ``'resnet_9blocks'`` . The released pix2pix models are
    ``define_G(3, 3, 64, 'unet_256', norm='batch', use_dropout=True)``; the CycleGAN ones
    ``define_G(3, 3, 64, 'resnet_9blocks', norm='instance', use_dropout=False)``.
    ``init_type=None`` skips initialisation (e.g. before loading a checkpoint). Unlike upstream,
    no device placement or DataParallel wrapping is done.
    """
    norm_layer = get_norm_layer(norm)
    if netG in ("resnet_6blocks", "resnet_9blocks"):

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



# --------------------------------------------------------------------------------------
# Generator (Johnson et al. 2016 style: down-sample, residual blocks, up-sample)
# --------------------------------------------------------------------------------------


def _padding(padding_type: str) -> tuple[list[nn.Module], int]:
    """Explicit pad layer(s) and the conv ``padding`` for a 3×3 convolution."""
    if padding_type == "reflect":
        return [nn.ReflectionPad2d(1)], 0
    if padding_type == "replicate":
        return [nn.ReplicationPad2d(1)], 0
    if padding_type == "zero":
        return [], 1
    raise ValueError(f"padding {padding_type!r} is not implemented; use 'reflect', 'replicate' or 'zero'")


class ResnetBlock(nn.Module):
    """``x + conv_block(x)`` with ``conv_block`` = pad · conv3×3 · norm · ReLU (· Dropout(0.5)) ·
    pad · conv3×3 · norm, at constant width ``dim``.

    State-dict indices with reflect/replicate padding: ``conv_block.1`` and ``conv_block.5``
    (``conv_block.6`` with dropout); with ``'zero'`` padding (no pad layers) ``conv_block.0`` and
    ``conv_block.3`` (``.4``).
    """

    def __init__(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> None:
        super().__init__()
        self.conv_block = self.build_conv_block(dim, padding_type, norm_layer, use_dropout, use_bias)

    def build_conv_block(
        self, dim: int, padding_type: str, norm_layer: Callable[[int], nn.Module], use_dropout: bool, use_bias: bool
    ) -> nn.Sequential:
        pad, p = _padding(padding_type)
        layers: list[nn.Module] = [
            *pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim), nn.ReLU(True)
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        pad, p = _padding(padding_type)
        layers += [*pad, nn.Conv2d(dim, dim, kernel_size=3, padding=p, bias=use_bias), norm_layer(dim)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """ResNet generator: ``(B, input_nc, H, W)`` → ``(B, output_nc, H, W)`` in ``[-1, 1]``.

    ``self.model`` = ReflectionPad(3) · conv7×7(ngf) · norm · ReLU · 2 × [conv3×3 stride 2 ·
    norm · ReLU] (ngf → 2ngf → 4ngf) · ``n_blocks`` × ResnetBlock(4ngf) · 2 × [ConvTranspose3×3
    stride 2 (output_padding 1) · norm · ReLU] (4ngf → 2ngf → ngf) · ReflectionPad(3) ·
    conv7×7(output_nc, always with bias) · Tanh. For ``resnet_9blocks``: ``model.1`` (first conv),
    ``model.4``/``model.7`` (down), ``model.10``…``model.18`` (blocks), ``model.19``/``model.22``
    (up), ``model.26`` (last conv).
    """

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
        use_dropout: bool = False,
        n_blocks: int = 6,
        padding_type: str = "reflect",
    ) -> None:
        super().__init__()
        if n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {n_blocks}")
        use_bias = uses_bias(norm_layer)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=use_bias),
            norm_layer(ngf),
            nn.ReLU(True),
        ]
        n_downsampling = 2
        for i in range(n_downsampling):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=use_bias),
                norm_layer(ngf * mult * 2),
                nn.ReLU(True),
            ]
        mult = 2**n_downsampling
        for _ in range(n_blocks):
            layers.append(
                ResnetBlock(ngf * mult, padding_type, norm_layer=norm_layer, use_dropout=use_dropout, use_bias=use_bias)
            )
        for i in range(n_downsampling):
            mult = 2 ** (n_downsampling - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=use_bias
                ),
                norm_layer(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)


# --------------------------------------------------------------------------------------
# Objective (paper §3): LSGAN adversarial losses + cycle consistency + identity
# --------------------------------------------------------------------------------------


def cyclegan_forward(
    netG_A: nn.Module, netG_B: nn.Module, real_A: torch.Tensor, real_B: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Both translation cycles: ``fake_B = G_A(A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(B)``,
    ``rec_B = G_A(fake_A)``."""
    fake_B = netG_A(real_A)
    fake_A = netG_B(real_B)
    return {"fake_B": fake_B, "rec_A": netG_B(fake_B), "fake_A": fake_A, "rec_B": netG_A(fake_A)}


def cyclegan_generator_loss(
    netG_A: nn.Module,
    netG_B: nn.Module,
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    lambda_A: float = 10.0,
    lambda_B: float = 10.0,
    lambda_identity: float = 0.5,
) -> dict[str, torch.Tensor]:
    """Generator objective, with ``images`` from :func:`cyclegan_forward` (``criterionGAN`` is
    ``GANLoss('lsgan')`` for CycleGAN):

    ``G = GAN(D_A(fake_B), real) + GAN(D_B(fake_A), real)
          + λ_A‖rec_A − A‖₁ + λ_B‖rec_B − B‖₁
          + λ_idt·(λ_B‖G_A(B) − B‖₁ + λ_A‖G_B(A) − A‖₁)``

    with mean-L1, λ_A = λ_B = 10 and λ_idt = 0.5 (the identity term is skipped when 0).
    Returns ``{'G_A', 'G_B', 'cycle_A', 'cycle_B', 'idt_A', 'idt_B', 'G'}``.
    """
    l1 = nn.functional.l1_loss
    if lambda_identity > 0:
        loss_idt_A = l1(netG_A(real_B), real_B) * lambda_B * lambda_identity
        loss_idt_B = l1(netG_B(real_A), real_A) * lambda_A * lambda_identity
    else:
        loss_idt_A = loss_idt_B = real_A.new_zeros(())
    loss_G_A = criterionGAN(netD_A(images["fake_B"]), True)
    loss_G_B = criterionGAN(netD_B(images["fake_A"]), True)
    loss_cycle_A = l1(images["rec_A"], real_A) * lambda_A
    loss_cycle_B = l1(images["rec_B"], real_B) * lambda_B
    total = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
    return {
        "G_A": loss_G_A,
        "G_B": loss_G_B,
        "cycle_A": loss_cycle_A,
        "cycle_B": loss_cycle_B,
        "idt_A": loss_idt_A,
        "idt_B": loss_idt_B,
        "G": total,
    }


def cyclegan_discriminator_loss(
    netD_A: nn.Module,
    netD_B: nn.Module,
    real_A: torch.Tensor,
    real_B: torch.Tensor,
    images: dict[str, torch.Tensor],
    criterionGAN: GANLoss,
    fake_A_pool: ImagePool,
    fake_B_pool: ImagePool,
) -> dict[str, torch.Tensor]:
    """Discriminator objectives: ``D_A`` on real B vs a pooled ``fake_B``, ``D_B`` on real A vs a
    pooled ``fake_A``, each ``0.5·(GAN(real) + GAN(fake))`` (:func:`discriminator_loss`).
    The pools (``ImagePool(50)`` upstream) are queried here. Returns ``{'D_A', 'D_B'}``.
    """
    fake_B = fake_B_pool.query(images["fake_B"])
    fake_A = fake_A_pool.query(images["fake_A"])
    return {
        "D_A": discriminator_loss(netD_A, real_B, fake_B, criterionGAN)["D"],
        "D_B": discriminator_loss(netD_B, real_A, fake_A, criterionGAN)["D"],
    }


# --------------------------------------------------------------------------------------
# cgmbench generator (``--model cyclegan``) and the training recipe
# --------------------------------------------------------------------------------------
#
# A released CycleGAN model is one direction's generator (``G_A`` for ``horse2zebra``, its
# inverse ``zebra2horse`` is a separate file). CycleGAN has no guidance and, with InstanceNorm
# and no dropout, no noise: every ``test_mode`` gives the same, deterministic output.


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

        return ResnetGenerator(input_nc, output_nc, ngf, get_norm_layer(norm), use_dropout, int(arch["n_blocks"]))
    return define_G(input_nc, output_nc, ngf, netG, norm=norm, use_dropout=use_dropout, init_type=None)


def generator_stride(arch: Mapping) -> int:
    """The side an input must be a multiple of: ``2**num_downs`` for a U-Net, 4 for a ResNet."""
    netG = arch["netG"]
    if netG.startswith("unet"):
        downs = {"unet_128": 7, "unet_256": 8}.get(netG) or int(arch["num_downs"])
        return 2**downs
    return 4
