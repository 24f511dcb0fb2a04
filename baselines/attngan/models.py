"""AttnGAN (Xu et al., CVPR 2018): the networks of taoxugit/AttnGAN ``code/model.py`` and ``GlobalAttention.py``.

A clean-room re-implementation with the official class names, attribute names and
``nn.Sequential`` layouts, so that the released files load with ``strict=True``:
``bird_AttnGAN2.pth`` / ``coco_AttnGAN2.pth`` (``G_NET``), the DAMSM ``text_encoder*.pth``
(``RNN_ENCODER``) and ``image_encoder*.pth`` (``CNN_ENCODER``: the Inception-v3 trunk in
torchvision's naming plus two projections). The official code reads a global ``cfg``; here every
setting is a constructor argument named after its ``cfg`` key, defaulting to ``miscc/config.py``:

=====================  ======================  =======  ==============  ==============
argument               official cfg key        default  birds (eval)    coco (eval)
=====================  ======================  =======  ==============  ==============
``branch_num``         ``TREE.BRANCH_NUM``     3        3               3
``gf_dim``             ``GAN.GF_DIM``          128      32              48
``df_dim``             ``GAN.DF_DIM``          64       64              96
``z_dim``              ``GAN.Z_DIM``           100      100             100
``condition_dim``      ``GAN.CONDITION_DIM``   100      100             100
``r_num``              ``GAN.R_NUM``           2        2               3
``embedding_dim``      ``TEXT.EMBEDDING_DIM``  256      256             256
``rnn_type``           ``RNN_TYPE``            'LSTM'   'LSTM'          'LSTM'
``n_steps``            ``TEXT.WORDS_NUM``      18       25              20
=====================  ======================  =======  ==============  ==============

Conventions and quirks kept from the official code:

* Images are ``(B, 3, H, W)`` float tensors in ``[-1, 1]`` (``Tanh``); ``G_NET`` returns one image
  per branch, 64, 128 and 256 pixels square.
* Captions are ``(B, T)`` int64 word indices, 0 = ``<end>`` = padding; ``mask = captions == 0``.
* ``CA_NET`` is ``GLU(fc(sent_emb))`` with ``fc`` → ``4 * condition_dim``; ``mu = [:, :C]``,
  ``logvar = [:, C:]``. Its noise is drawn in every forward pass (also in eval mode): pass
  ``ca_eps`` or a ``torch.Generator`` (the official code draws from the global generator).
* ``INIT_STAGE_G`` feeds ``cat(c_code, z)`` (condition first; StackGAN puts the noise first).
* ``NEXT_STAGE_G`` ignores its ``c_code`` argument; ``ResBlock`` has no final activation.
* ``GlobalAttentionGeneral`` masks with ``mask.repeat(queryL, 1)``: score row ``b*queryL + q``
  gets the mask of sample ``(b*queryL + q) % B``, not of ``b`` (an official bug, visible when
  B > 1 and caption lengths differ). ``mask_alignment="official"`` (default) reproduces it,
  ``"per_sample"`` masks each sample with its own caption.
* ``CNN_ENCODER`` resizes its input to 299×299 with ``nn.Upsample(mode="bilinear")`` and feeds
  the ``[-1, 1]`` image to Inception as is (no ImageNet normalisation). Under the PyTorch of
  2018 (0.3) that resize behaved as ``align_corners=True``; the unmodified code under current
  PyTorch uses ``align_corners=False``. Both are selectable (``align_corners``, default False).

Order: shared blocks, DAMSM encoders (text, Inception trunk, image), generator (CA,
stages, attention, G_NET), discriminators, presets.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "GLU",
    "conv1x1",
    "conv3x3",
    "upBlock",
    "Block3x3_relu",
    "ResBlock",
    "RNN_ENCODER",
    "BasicConv2d",
    "InceptionA",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "CNN_ENCODER",
    "CA_NET",
    "INIT_STAGE_G",
    "GlobalAttentionGeneral",
    "NEXT_STAGE_G",
    "GET_IMAGE_G",
    "G_NET",
    "Block3x3_leakRelu",
    "downBlock",
    "encode_image_by_16times",
    "D_GET_LOGITS",
    "D_NET64",
    "D_NET128",
    "D_NET256",
    "birds_config",
    "coco_config",
]


# --------------------------------------------------------------------------------------
# Shared blocks
# --------------------------------------------------------------------------------------


class GLU(nn.Module):
    """Gated linear unit over channels: ``x[:, :C/2] * sigmoid(x[:, C/2:])``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nc = x.size(1)
        if nc % 2:
            raise ValueError(f"GLU needs an even number of channels, got {nc}")
        nc //= 2
        return x[:, :nc] * torch.sigmoid(x[:, nc:])


def conv1x1(in_planes: int, out_planes: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=bias)


def conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


def upBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """×2 nearest upsampling, conv3x3 to ``2*out``, BatchNorm, GLU → ``out`` channels (keys ``1.*``, ``2.*``)."""
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        conv3x3(in_planes, out_planes * 2),
        nn.BatchNorm2d(out_planes * 2),
        GLU(),
    )


def Block3x3_relu(in_planes: int, out_planes: int) -> nn.Sequential:
    """conv3x3 to ``2*out``, BatchNorm, GLU (same size; the name is the official one)."""
    return nn.Sequential(conv3x3(in_planes, out_planes * 2), nn.BatchNorm2d(out_planes * 2), GLU())


class ResBlock(nn.Module):
    """``block(x) + x`` with ``block`` = conv3x3 (→2C), BN, GLU, conv3x3, BN; no final activation."""

    def __init__(self, channel_num: int):
        super().__init__()
        self.block = nn.Sequential(
            conv3x3(channel_num, channel_num * 2),
            nn.BatchNorm2d(channel_num * 2),
            GLU(),
            conv3x3(channel_num, channel_num),
            nn.BatchNorm2d(channel_num),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + x


# --------------------------------------------------------------------------------------
# DAMSM text encoder
# --------------------------------------------------------------------------------------


class RNN_ENCODER(nn.Module):
    """Bi-directional LSTM text encoder of DAMSM.

    ``forward(captions (B, T) int64, cap_lens (B,), hidden=None)`` returns
    ``words_emb (B, nhidden, max(cap_lens))`` (forward direction in the first ``nhidden/2``
    channels, zeros at padded positions) and ``sent_emb (B, nhidden)`` = the final hidden states
    ``[forward, backward]``. ``nhidden`` is the total over both directions (the released encoders
    use 256, i.e. 128 per direction). Captions need not be sorted by length (the official code
    requires it; sorted input gives the same numbers). Dropout acts on the word vectors in train
    mode only; the LSTM's ``dropout`` has no effect with one layer, as in the official code.
    """

    def __init__(
        self,
        ntoken: int,
        ninput: int = 300,
        drop_prob: float = 0.5,
        nhidden: int = 128,
        nlayers: int = 1,
        bidirectional: bool = True,
        rnn_type: str = "LSTM",
        n_steps: int = 18,
    ):
        super().__init__()
        self.n_steps = n_steps
        self.ntoken = ntoken
        self.ninput = ninput
        self.drop_prob = drop_prob
        self.nlayers = nlayers
        self.bidirectional = bidirectional
        self.rnn_type = rnn_type
        self.num_directions = 2 if bidirectional else 1
        self.nhidden = nhidden // self.num_directions  # per direction

        self.encoder = nn.Embedding(ntoken, ninput)
        self.drop = nn.Dropout(drop_prob)
        if rnn_type not in ("LSTM", "GRU"):
            raise ValueError(f"rnn_type must be 'LSTM' or 'GRU', got {rnn_type!r}")
        rnn = nn.LSTM if rnn_type == "LSTM" else nn.GRU
        self.rnn = rnn(ninput, self.nhidden, nlayers, batch_first=True,
                       dropout=drop_prob if nlayers > 1 else 0.0, bidirectional=bidirectional)
        self.encoder.weight.data.uniform_(-0.1, 0.1)

    def init_hidden(self, bsz: int):
        """Zero initial state(s), ``(nlayers * num_directions, bsz, nhidden)`` each."""
        weight = next(self.parameters())
        h = weight.new_zeros(self.nlayers * self.num_directions, bsz, self.nhidden)
        return (h, h.clone()) if self.rnn_type == "LSTM" else h

    def forward(self, captions: torch.Tensor, cap_lens: torch.Tensor, hidden=None, mask=None):
        if hidden is None:
            hidden = self.init_hidden(captions.size(0))
        emb = self.drop(self.encoder(captions))
        lengths = torch.as_tensor(cap_lens).detach().to("cpu", torch.int64)
        packed = pack_padded_sequence(emb, lengths, batch_first=True, enforce_sorted=False)
        output, hidden = self.rnn(packed, hidden)
        output = pad_packed_sequence(output, batch_first=True)[0]
        words_emb = output.transpose(1, 2)
        h_n = hidden[0] if self.rnn_type == "LSTM" else hidden
        sent_emb = h_n.transpose(0, 1).contiguous().view(-1, self.nhidden * self.num_directions)
        return words_emb, sent_emb


# --------------------------------------------------------------------------------------
# DAMSM image encoder: the Inception-v3 trunk (torchvision naming) + projections
# --------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=0.001) + ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35×35 block: 1×1, 5×5, double 3×3, pool → 64 + 64 + 96 + ``pool_features`` channels."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):
    """35→17 reduction: strided 3×3, double 3×3, max pool → 384 + 96 + in channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):
    """17×17 block with factorised 7×7 convolutions → 4 × 192 channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17→8 reduction → 320 + 192 + in channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8×8 block with split 1×3 / 3×1 branches → 320 + 768 + 768 + 192 = 2048 channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(_avg_pool(x))], 1)


class CNN_ENCODER(nn.Module):
    """DAMSM image encoder: image ``(B, 3, H, W)`` in ``[-1, 1]`` → ``(features, cnn_code)``.

    ``features (B, nef, 17, 17)``: the ``Mixed_6e`` region features projected by ``emb_features``
    (1×1 conv, no bias); ``cnn_code (B, nef)``: the 8×8-average-pooled ``Mixed_7c`` output projected
    by ``emb_cnn_code`` (the global code R-precision uses). The trunk keeps torchvision's
    ``inception_v3`` names (``Conv2d_1a_3x3`` … ``Mixed_7c``); weights come from the DAMSM file.
    The official code forces ``nef = 256`` when ``cfg.TRAIN.FLAG`` is False; here ``nef`` is what
    is passed (the released encoders have 256).
    """

    def __init__(self, nef: int = 256, align_corners: bool = False):
        super().__init__()
        self.nef = nef
        self.align_corners = align_corners
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.emb_features = conv1x1(768, nef)
        self.emb_cnn_code = nn.Linear(2048, nef)
        for p in self.parameters():  # the trunk is frozen (ImageNet weights), as in the official code
            p.requires_grad = False
        self.emb_features.weight.requires_grad = True
        for p in self.emb_cnn_code.parameters():
            p.requires_grad = True
        self.emb_features.weight.data.uniform_(-0.1, 0.1)
        self.emb_cnn_code.weight.data.uniform_(-0.1, 0.1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=self.align_corners)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147 x 147 x 64
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73 x 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 71 x 71 x 192
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # 35 x 35 x 288
        x = self.Mixed_6a(x)  # 17 x 17 x 768
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        features = x  # region features, 17 x 17 x 768
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))  # 8 x 8 x 2048
        x = F.avg_pool2d(x, kernel_size=8).view(x.size(0), -1)
        return self.emb_features(features), self.emb_cnn_code(x)


# --------------------------------------------------------------------------------------
# Generator: conditioning augmentation, stages, attention
# --------------------------------------------------------------------------------------


class CA_NET(nn.Module):
    """Conditioning augmentation: ``sent_emb (B, t_dim)`` → ``c_code, mu, logvar``, each ``(B, c_dim)``.

    ``x = GLU(fc(sent_emb))`` with ``fc = Linear(t_dim, 4 * c_dim)`` (the attribute is called
    ``relu`` officially); ``mu = x[:, :C]``, ``logvar = x[:, C:]``;
    ``c_code = eps * exp(0.5 * logvar) + mu`` with ``eps = ca_eps`` or N(0, 1) from ``generator``.
    """

    def __init__(self, t_dim: int = 256, c_dim: int = 100):
        super().__init__()
        self.t_dim = t_dim
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 4, bias=True)
        self.relu = GLU()

    def encode(self, text_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.relu(self.fc(text_embedding))
        return x[:, : self.c_dim], x[:, self.c_dim :]

    def reparametrize(self, mu, logvar, ca_eps: torch.Tensor | None = None, generator: torch.Generator | None = None):
        std = torch.exp(0.5 * logvar)
        if ca_eps is None:
            ca_eps = torch.randn(std.shape, generator=generator, device=std.device, dtype=std.dtype)
        elif ca_eps.shape != std.shape:
            raise ValueError(f"ca_eps has shape {tuple(ca_eps.shape)}, expected {tuple(std.shape)}")
        return ca_eps.to(std) * std + mu

    def forward(self, text_embedding, ca_eps=None, generator=None):
        mu, logvar = self.encode(text_embedding)
        return self.reparametrize(mu, logvar, ca_eps, generator), mu, logvar


class INIT_STAGE_G(nn.Module):
    """First stage: ``(z (B, z_dim), c_code (B, ncf))`` → ``(B, ngf/16, 64, 64)`` with ``ngf = 16 * GF_DIM``."""

    def __init__(self, ngf: int, ncf: int, z_dim: int = 100):
        super().__init__()
        self.gf_dim = ngf
        self.in_dim = z_dim + ncf
        self.fc = nn.Sequential(nn.Linear(self.in_dim, ngf * 4 * 4 * 2, bias=False), nn.BatchNorm1d(ngf * 4 * 4 * 2), GLU())
        self.upsample1 = upBlock(ngf, ngf // 2)
        self.upsample2 = upBlock(ngf // 2, ngf // 4)
        self.upsample3 = upBlock(ngf // 4, ngf // 8)
        self.upsample4 = upBlock(ngf // 8, ngf // 16)

    def forward(self, z_code: torch.Tensor, c_code: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.cat((c_code, z_code), 1)).view(-1, self.gf_dim, 4, 4)
        return self.upsample4(self.upsample3(self.upsample2(self.upsample1(out))))


class GlobalAttentionGeneral(nn.Module):
    """Word-level attention (paper eq. 2): image features attend over the words.

    ``forward(input (B, idf, ih, iw), context (B, cdf, T))`` → ``(weightedContext (B, idf, ih, iw),
    attn (B, T, ih, iw))``. ``applyMask(mask (B, T) bool)`` marks padded words (True = ignore);
    masked scores become ``-inf`` before the softmax over words. See the module docstring for
    ``mask_alignment``.
    """

    def __init__(self, idf: int, cdf: int, mask_alignment: str = "official"):
        super().__init__()
        if mask_alignment not in ("official", "per_sample"):
            raise ValueError(f"mask_alignment must be 'official' or 'per_sample', got {mask_alignment!r}")
        self.conv_context = conv1x1(cdf, idf)
        self.mask_alignment = mask_alignment
        self.mask: torch.Tensor | None = None

    def applyMask(self, mask: torch.Tensor | None) -> None:
        self.mask = mask

    def forward(self, input: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ih, iw = input.size(2), input.size(3)
        queryL = ih * iw
        batch_size, sourceL = context.size(0), context.size(2)
        targetT = input.view(batch_size, -1, queryL).transpose(1, 2)  # B x queryL x idf
        sourceT = self.conv_context(context.unsqueeze(3)).squeeze(3)  # B x idf x sourceL
        attn = torch.bmm(targetT, sourceT).view(batch_size * queryL, sourceL)
        if self.mask is not None:
            if self.mask_alignment == "official":
                mask = self.mask.repeat(queryL, 1)  # row r gets mask[r % B]
            else:
                mask = self.mask.repeat_interleave(queryL, dim=0)  # row b*queryL + q gets mask[b]
            attn = attn.masked_fill(mask.bool(), float("-inf"))
        attn = F.softmax(attn, dim=1).view(batch_size, queryL, sourceL).transpose(1, 2).contiguous()
        weightedContext = torch.bmm(sourceT, attn).view(batch_size, -1, ih, iw)
        return weightedContext, attn.view(batch_size, -1, ih, iw)


class NEXT_STAGE_G(nn.Module):
    """Refinement stage: ``(h_code (B, ngf, s, s), word_embs (B, nef, T), mask)`` → ``(B, ngf, 2s, 2s)`` and
    the attention map ``(B, T, s, s)``. ``c_code`` is accepted and unused, as officially."""

    def __init__(self, ngf: int, nef: int, ncf: int, r_num: int = 2, mask_alignment: str = "official"):
        super().__init__()
        self.gf_dim = ngf
        self.ef_dim = nef
        self.cf_dim = ncf
        self.num_residual = r_num
        self.att = GlobalAttentionGeneral(ngf, nef, mask_alignment)
        self.residual = nn.Sequential(*[ResBlock(ngf * 2) for _ in range(r_num)])
        self.upsample = upBlock(ngf * 2, ngf)

    def forward(self, h_code, c_code, word_embs, mask):
        self.att.applyMask(mask)
        c_code, att = self.att(h_code, word_embs)
        out_code = self.upsample(self.residual(torch.cat((h_code, c_code), 1)))
        return out_code, att


class GET_IMAGE_G(nn.Module):
    """``(B, ngf, s, s)`` → image ``(B, 3, s, s)`` in ``[-1, 1]`` (conv3x3 + Tanh)."""

    def __init__(self, ngf: int):
        super().__init__()
        self.gf_dim = ngf
        self.img = nn.Sequential(conv3x3(ngf, 3), nn.Tanh())

    def forward(self, h_code: torch.Tensor) -> torch.Tensor:
        return self.img(h_code)


class G_NET(nn.Module):
    """The attentional generator with ``branch_num`` stages (64, 128, 256 px).

    ``forward(z_code (B, z_dim), sent_emb (B, embedding_dim), word_embs (B, embedding_dim, T),
    mask (B, T) bool, ca_eps=None, generator=None)`` returns ``(fake_imgs, att_maps, mu, logvar)``:
    a list of ``branch_num`` images in ``[-1, 1]``, a list of ``branch_num - 1`` attention maps
    ``(B, T, s, s)``, and the CA ``mu``/``logvar`` ``(B, condition_dim)``.
    """

    def __init__(
        self,
        branch_num: int = 3,
        gf_dim: int = 128,
        z_dim: int = 100,
        condition_dim: int = 100,
        r_num: int = 2,
        embedding_dim: int = 256,
        mask_alignment: str = "official",
    ):
        super().__init__()
        if not 1 <= branch_num <= 3:
            raise ValueError(f"branch_num must be 1, 2 or 3, got {branch_num}")
        ngf, nef, ncf = gf_dim, embedding_dim, condition_dim
        self.branch_num = branch_num
        self.ca_net = CA_NET(nef, ncf)
        self.h_net1 = INIT_STAGE_G(ngf * 16, ncf, z_dim)
        self.img_net1 = GET_IMAGE_G(ngf)
        if branch_num > 1:
            self.h_net2 = NEXT_STAGE_G(ngf, nef, ncf, r_num, mask_alignment)
            self.img_net2 = GET_IMAGE_G(ngf)
        if branch_num > 2:
            self.h_net3 = NEXT_STAGE_G(ngf, nef, ncf, r_num, mask_alignment)
            self.img_net3 = GET_IMAGE_G(ngf)

    def forward(self, z_code, sent_emb, word_embs, mask, ca_eps=None, generator=None):
        c_code, mu, logvar = self.ca_net(sent_emb, ca_eps, generator)
        h_code = self.h_net1(z_code, c_code)
        fake_imgs, att_maps = [self.img_net1(h_code)], []
        for i in range(2, self.branch_num + 1):
            h_code, att = getattr(self, f"h_net{i}")(h_code, c_code, word_embs, mask)
            fake_imgs.append(getattr(self, f"img_net{i}")(h_code))
            att_maps.append(att)
        return fake_imgs, att_maps, mu, logvar


# --------------------------------------------------------------------------------------
# Discriminators
# --------------------------------------------------------------------------------------


def Block3x3_leakRelu(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(in_planes, out_planes), nn.BatchNorm2d(out_planes), nn.LeakyReLU(0.2, inplace=True))


def downBlock(in_planes: int, out_planes: int) -> nn.Sequential:
    """Halve the size: 4×4 stride-2 conv, BN, LeakyReLU."""
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 4, 2, 1, bias=False), nn.BatchNorm2d(out_planes),
                         nn.LeakyReLU(0.2, inplace=True))


def encode_image_by_16times(ndf: int) -> nn.Sequential:
    """Image ``(B, 3, s, s)`` → ``(B, 8*ndf, s/16, s/16)``."""
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 2),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 4),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ndf * 8),
        nn.LeakyReLU(0.2, inplace=True),
    )


class D_GET_LOGITS(nn.Module):
    """Head on the ``(B, 8*ndf, 4, 4)`` code → ``(B,)`` probabilities; with ``bcondition`` the sentence
    embedding ``(B, nef)`` is tiled to 4×4 and joined by ``jointConv`` first."""

    def __init__(self, ndf: int, nef: int, bcondition: bool = False):
        super().__init__()
        self.df_dim = ndf
        self.ef_dim = nef
        self.bcondition = bcondition
        if bcondition:
            self.jointConv = Block3x3_leakRelu(ndf * 8 + nef, ndf * 8)
        self.outlogits = nn.Sequential(nn.Conv2d(ndf * 8, 1, kernel_size=4, stride=4), nn.Sigmoid())

    def forward(self, h_code, c_code=None):
        if self.bcondition and c_code is not None:
            c_code = c_code.view(-1, self.ef_dim, 1, 1).repeat(1, 1, 4, 4)
            h_code = self.jointConv(torch.cat((h_code, c_code), 1))
        return self.outlogits(h_code).view(-1)


class D_NET64(nn.Module):
    """64×64 discriminator: image → ``(B, 8*df_dim, 4, 4)``; heads ``UNCOND_DNET`` (if ``b_jcu``), ``COND_DNET``."""

    def __init__(self, df_dim: int = 64, embedding_dim: int = 256, b_jcu: bool = True):
        super().__init__()
        ndf, nef = df_dim, embedding_dim
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var):
        return self.img_code_s16(x_var)


class D_NET128(nn.Module):
    """128×128 discriminator (one extra down block and a 3×3 reduction)."""

    def __init__(self, df_dim: int = 64, embedding_dim: int = 256, b_jcu: bool = True):
        super().__init__()
        ndf, nef = df_dim, embedding_dim
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s32_1 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var):
        return self.img_code_s32_1(self.img_code_s32(self.img_code_s16(x_var)))


class D_NET256(nn.Module):
    """256×256 discriminator (two extra down blocks and two 3×3 reductions)."""

    def __init__(self, df_dim: int = 64, embedding_dim: int = 256, b_jcu: bool = True):
        super().__init__()
        ndf, nef = df_dim, embedding_dim
        self.img_code_s16 = encode_image_by_16times(ndf)
        self.img_code_s32 = downBlock(ndf * 8, ndf * 16)
        self.img_code_s64 = downBlock(ndf * 16, ndf * 32)
        self.img_code_s64_1 = Block3x3_leakRelu(ndf * 32, ndf * 16)
        self.img_code_s64_2 = Block3x3_leakRelu(ndf * 16, ndf * 8)
        self.UNCOND_DNET = D_GET_LOGITS(ndf, nef, bcondition=False) if b_jcu else None
        self.COND_DNET = D_GET_LOGITS(ndf, nef, bcondition=True)

    def forward(self, x_var):
        x = self.img_code_s64(self.img_code_s32(self.img_code_s16(x_var)))
        return self.img_code_s64_2(self.img_code_s64_1(x))


# --------------------------------------------------------------------------------------
# Presets (``code/cfg/eval_bird.yml``, ``eval_coco.yml``)
# --------------------------------------------------------------------------------------


def birds_config() -> dict:
    """``G_NET`` kwargs of ``bird_AttnGAN2.pth``; DAMSM: ``RNN_ENCODER(5450, nhidden=256)``, words 25."""
    return dict(branch_num=3, gf_dim=32, z_dim=100, condition_dim=100, r_num=2, embedding_dim=256)


def coco_config() -> dict:
    """``G_NET`` kwargs of ``coco_AttnGAN2.pth``; DAMSM: ``RNN_ENCODER(27297, nhidden=256)``, words 20."""
    return dict(branch_num=3, gf_dim=48, z_dim=100, condition_dim=100, r_num=3, embedding_dim=256)
