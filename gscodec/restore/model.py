"""The restoration network: a small U-Net that predicts a correction to a decoded render.

Inputs (one batch ``[B, 8, H, W]``, built by :func:`make_input`):

    0-2  the decoded render in [0, 1]
    3-5  the coarse side-information residual, bilinearly upsampled to the render size, in grey
         levels (units of ``UNIT`` = 1/255, the default quantization step, so mostly small
         integers); zeros where the view has no side information
    6    flag: 1 where channels 3-5 hold a residual, 0 where they do not
    7    the quality preset as a constant channel, ``quality / 10``

Output: ``restored = render + flag * upsampled_residual + UNIT * net(x)``. The last convolution
starts at zero, so an untrained network returns exactly the side-information target of
:func:`gscodec.sideinfo.targets` (or the render itself without a residual): training can only
move it away from that where the loss says so. After training, a gain per (flag, preset) in
[0, 1] scales the correction (``gain`` buffer, set by :func:`gscodec.training.prior.calibrate` to
the least-squares optimum on training pairs): where the correction does not help on average
it is shrunk or switched off. The correction is predicted in grey levels
because the errors at presets 1-5 are about a grey level or less.

The sizes must be multiples of 8 (three 2x downsamplings); :meth:`RestoreNet.restore` pads by
reflection and crops back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

IN_CHANNELS = 8
MULTIPLE = 8
UNIT = 1.0 / 255  # the unit of the residual input and of the predicted correction


@dataclass(frozen=True)
class RestoreConfig:
    """Channel widths of the four levels (full, 1/2, 1/4, 1/8 resolution) and the residual
    blocks per level on the way down (the way up has one block per level)."""

    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    blocks: tuple[int, int, int, int] = (1, 1, 2, 2)
    # > 0: the correction is projected to zero mean over every ``block x block`` pixel block
    # (aligned at the top left, as the side-information residual's blocks), so the network
    # only redistributes within blocks and never changes a block's average colour
    zero_mean_block: int = 0

    def to_dict(self) -> dict[str, list[int] | int]:
        return {"widths": list(self.widths), "blocks": list(self.blocks),
                "zero_mean_block": self.zero_mean_block}

    @classmethod
    def from_dict(cls, d: dict) -> RestoreConfig:
        block = int(d.get("zero_mean_block", 0))
        if block < 0 or (block and MULTIPLE % block):
            raise ValueError(f"zero_mean_block {block} does not divide {MULTIPLE}")
        return cls(widths=tuple(int(x) for x in d["widths"]),  # type: ignore[arg-type]
                   blocks=tuple(int(x) for x in d["blocks"]),  # type: ignore[arg-type]
                   zero_mean_block=block)


class ResBlock(nn.Module):
    """conv3x3 - GELU - conv3x3, added to the input (scaled by a learned per-channel gain
    that starts small, as in NAFNet, so that deep stacks start near the identity)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.gain = nn.Parameter(torch.full((1, c, 1, 1), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gain * self.conv2(F.gelu(self.conv1(x)))


class RestoreNet(nn.Module):
    """``qualities``: the presets the network was trained for (set from the weights file's
    metadata); empty means any. :func:`gscodec.restore.restore_image` applies the network to
    those presets only."""

    def __init__(self, config: RestoreConfig | None = None):
        super().__init__()
        self.config = cfg = config or RestoreConfig()
        self.qualities: tuple[int, ...] = ()
        self.digest = ""  # SHA-256 (hex) of the weights file it was loaded from, if any
        w, b = cfg.widths, cfg.blocks
        self.head = nn.Conv2d(IN_CHANNELS, w[0], 3, padding=1)
        self.enc = nn.ModuleList(nn.Sequential(*[ResBlock(w[i]) for _ in range(b[i])])
                                 for i in range(4))
        self.down = nn.ModuleList(nn.Conv2d(w[i], w[i + 1], 2, stride=2) for i in range(3))
        self.up = nn.ModuleList(nn.Sequential(nn.Conv2d(w[i + 1], w[i] * 4, 1),
                                              nn.PixelShuffle(2)) for i in range(3))
        self.dec = nn.ModuleList(ResBlock(w[i]) for i in range(3))
        self.tail = nn.Conv2d(w[0], 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # output gain per (flag, preset), 1 while training; calibrate() lowers it (down to 0, no
        # correction) where the correction does not pay on average
        self.register_buffer("gain", torch.ones(2, 11))

    def forward(self, x: torch.Tensor, gain: float | None = None) -> torch.Tensor:
        """The correction in grey levels, ``[B, 3, H, W]`` (H, W multiples of 8), scaled by the
        calibrated ``gain[flag, preset]``, or by ``gain`` where given (a per-file gain)."""
        c = self.correction(x)
        if gain is not None:
            return c * gain
        flag = x[:, 6, 0, 0].round().long().clamp(0, 1)
        q = (x[:, 7, 0, 0] * 10).round().long().clamp(0, 10)
        return c * self.gain[flag, q].view(-1, 1, 1, 1)

    def correction(self, x: torch.Tensor) -> torch.Tensor:
        """The network's correction before any gain (grey levels)."""
        h = self.head(x)
        skips = []
        for i in range(3):
            h = self.enc[i](h)
            skips.append(h)
            h = self.down[i](h)
        h = self.enc[3](h)
        for i in reversed(range(3)):
            h = self.dec[i](self.up[i](h) + skips[i])
        c = self.tail(h)
        b = self.config.zero_mean_block
        if b:
            c = c - F.interpolate(F.avg_pool2d(c, b), scale_factor=b, mode="nearest")
        return c

    def restore(self, x: torch.Tensor, gain: float | None = None) -> torch.Tensor:
        """The restored images ``[B, 3, H, W]`` in [0, 1] for inputs from :func:`make_input`
        (any size: padded to a multiple of 8 by reflection, cropped back); ``gain`` as in
        :meth:`forward`."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % MULTIPLE, (-w) % MULTIPLE
        xp = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        corr = self(xp, gain)[..., :h, :w]
        return compose(x, corr).clamp(0, 1)


def compose(x: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
    """``render + flag * upsampled residual + UNIT * correction`` (not clamped)."""
    img, res, flag = x[:, 0:3], x[:, 3:6], x[:, 6:7]
    return img + UNIT * (flag * res + corr)


def least_squares_gain(num: float, den: float) -> float:
    """The scale ``g`` of a correction ``c`` that best fits an error ``e`` (``num = <c, e>``,
    ``den = <c, c>``), clipped to [0, 1]; 0 where the correction is zero."""
    return min(1.0, max(0.0, num / den)) if den > 0 else 0.0


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def upsample(residual: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bilinear upsampling of coarse residuals ``[B, 3, h, w]`` to ``[B, 3, height, width]``,
    exactly as :func:`gscodec.sideinfo.targets` does it."""
    return F.interpolate(residual, size=(height, width), mode="bilinear", align_corners=False)


def make_input(image: torch.Tensor, residual: torch.Tensor | None,
               quality: int | torch.Tensor) -> torch.Tensor:
    """Network input ``[B, 8, H, W]``.

    Args:
        image: decoded renders ``[B, 3, H, W]`` in [0, 1].
        residual: coarse residuals ``[B, 3, h, w]`` in image units (as in ``SideInfo``), or
            ``None`` where no view has side information. A batch mixing views with and without a
            residual passes zeros for the latter and gets flag 1 for all; use
            :func:`make_input_flagged` to set the flag per sample.
        quality: the preset (1..10), one for the batch or a tensor ``[B]``.
    """
    b, _, h, w = image.shape
    if residual is None:
        res = image.new_zeros(b, 3, h, w)
        flag = image.new_zeros(b)
    else:
        res = upsample(residual.to(image), h, w) / UNIT
        flag = image.new_ones(b)
    return make_input_flagged(image, res, flag, quality)


def make_input_flagged(image: torch.Tensor, upsampled: torch.Tensor, flag: torch.Tensor,
                       quality: int | torch.Tensor) -> torch.Tensor:
    """Like :func:`make_input` with the residual already upsampled and in grey levels, and a
    per-sample ``flag [B]`` (the residual of a sample with flag 0 is ignored: zeroed)."""
    b, _, h, w = image.shape
    flag = flag.to(image).view(b, 1, 1, 1)
    q = torch.as_tensor(quality, dtype=image.dtype, device=image.device).reshape(-1)
    q = q.expand(b).view(b, 1, 1, 1) / 10.0
    return torch.cat([image, upsampled * flag, flag.expand(b, 1, h, w), q.expand(b, 1, h, w)],
                     dim=1)
