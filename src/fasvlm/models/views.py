"""On-device random views of a normalised image batch, for the contrastive baselines (FLIP-MCL, SA-FAS).

FLIP-MCL draws two SimCLR views per image (RandomResizedCrop(scale 0.08-1), ColorJitter(0.4, 0.4, 0.4) p=0.8,
Grayscale p=0.2, horizontal flip); SA-FAS draws two RandomResizedCrop(scale 0.2-1, ratio 1) + flip views. torchvision
cannot be imported on the project's CPU path and the loader delivers one normalised view, so the views are made here
on the device, written by hand: crop-and-resize through ``affine_grid``/``grid_sample`` and colour operations on the
normalised tensor (brightness as an offset, contrast and saturation as scalings about the image/grey mean). They are
close to, not identical with, torchvision's PIL-space operations (no hue jitter, no Gaussian blur).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["random_view"]


def random_view(x: torch.Tensor, *, scale: tuple[float, float] = (0.08, 1.0), flip: bool = True,
                jitter: float = 0.0, p_jitter: float = 0.8, p_gray: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """A random square crop of area fraction U(scale) resized back to the input size, optional flip, colour jitter
    (strength ``jitter``, probability ``p_jitter``) and grey-scale (probability ``p_gray``). x (B, 3, H, W) -> same."""
    b = x.shape[0]

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device="cpu").to(x.device, x.dtype)

    side = (scale[0] + (scale[1] - scale[0]) * rand(b)).sqrt()  # (B,) crop side as a fraction of the image
    cx, cy = (rand(b) * 2 - 1) * (1 - side), (rand(b) * 2 - 1) * (1 - side)  # crop centre in [-1, 1] coordinates
    sign = torch.where(rand(b) < 0.5, -1.0, 1.0).to(x.dtype) if flip else torch.ones_like(side)
    theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = side * sign, cx
    theta[:, 1, 1], theta[:, 1, 2] = side, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)  # (B, 3, H, W)
    if jitter > 0:
        on = (rand(b) < p_jitter).to(x.dtype).view(b, 1, 1, 1)
        bright = (rand(b) * 2 - 1).view(b, 1, 1, 1) * jitter
        contrast = (1 + (rand(b) * 2 - 1) * jitter).view(b, 1, 1, 1)
        sat = (1 + (rand(b) * 2 - 1) * jitter).view(b, 1, 1, 1)
        grey = out.mean(1, keepdim=True)
        mean = out.mean((1, 2, 3), keepdim=True)
        jittered = (grey + (out - grey) * sat - mean) * contrast + mean + bright
        out = on * jittered + (1 - on) * out
    if p_gray > 0:
        on = (rand(b) < p_gray).to(x.dtype).view(b, 1, 1, 1)
        out = on * out.mean(1, keepdim=True).expand_as(out) + (1 - on) * out
    return out
