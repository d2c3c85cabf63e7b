"""Joint image + mask transforms keep the two aligned, and void (255) stays void."""

import pytest
import torch
from torchvision import tv_tensors

from vitmae.data.joint_transforms import (
    VOID,
    crop_window,
    eval_image_transform,
    train_joint_transform,
)

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
STEP = 40  # class c is drawn with intensity STEP * c; void with VOID_LEVEL; padding is 0
VOID_LEVEL = 220


def coded_pair(H: int = 40, W: int = 56) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """Blocks of classes 1-5 with a 255 border, the image's intensity encoding the label."""
    rows = torch.arange(H)[:, None] // 10
    cols = torch.arange(W)[None, :] // 14
    mask = (rows + cols) % 5 + 1  # (H, W) classes 1..5 in 10 x 14 blocks
    mask[:3], mask[:, -3:] = VOID, VOID  # a void band, as VOC's object borders
    level = torch.where(mask == VOID, VOID_LEVEL, mask * STEP)
    img = level.to(torch.uint8).expand(3, H, W).clone()
    return tv_tensors.Image(img), tv_tensors.Mask(mask.to(torch.uint8))


def decode(img: torch.Tensor) -> torch.Tensor:
    """(3, S, S) normalized -> (S, S) intensity 0-255 of the first channel."""
    return (img[0] * STD[0] + MEAN[0]) * 255


def uniform_interior(mask: torch.Tensor) -> torch.Tensor:
    """(S, S) bool: pixels whose 5 x 5 neighbourhood has one label (away from blends), not
    on the crop's edge (resizing blended those with pixels outside the crop)."""
    m = mask.float()[None, None]
    hi = torch.nn.functional.max_pool2d(m, 5, 1, 2)
    lo = -torch.nn.functional.max_pool2d(-m, 5, 1, 2)
    inner = (hi == lo)[0, 0]
    inner[:2], inner[-2:], inner[:, :2], inner[:, -2:] = False, False, False, False
    return inner


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    torch.manual_seed(seed)
    img, mask = coded_pair()
    out_img, out_mask = train_joint_transform(32, MEAN, STD)(img, mask)
    assert out_img.shape == (3, 32, 32) and out_img.dtype == torch.float32
    assert out_mask.shape == (32, 32) and out_mask.dtype == torch.int64
    assert set(out_mask.unique().tolist()) <= {1, 2, 3, 4, 5, VOID}  # 255 never a class
    level = decode(out_img)
    inner = uniform_interior(out_mask)
    expect = torch.where(out_mask == VOID, -1, out_mask * STEP).float()
    labelled = inner & (out_mask != VOID)
    assert labelled.any()
    torch.testing.assert_close(level[labelled], expect[labelled], atol=2.0, rtol=0)
    # void pixels are either the source's void band or the crop's padding (image 0)
    void = inner & (out_mask == VOID)
    near = lambda v: (level[void] - v).abs() < 2.0  # noqa: E731
    assert (near(VOID_LEVEL) | near(0)).all()


def test_padding_is_void_in_the_mask_and_zero_in_the_image():
    n_padded = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out_img, out_mask = train_joint_transform(32, MEAN, STD)(*coded_pair())
        padded = decode(out_img).abs() < 1.0  # no source pixel is 0: this is padding
        assert (out_mask[padded] == VOID).all()
        n_padded += int(padded.any())
    assert n_padded > 0  # a scale below 1 leaves the image smaller than the crop


def test_crop_window_stays_inside_the_photo_and_the_crop():
    g = torch.Generator().manual_seed(0)
    for _ in range(500):
        n0 = int(torch.randint(8, 400, (), generator=g))
        size = int(torch.randint(8, 200, (), generator=g))
        f = float(torch.empty(()).uniform_(0.2, 3.0, generator=g))
        a, b, n, o = crop_window(n0, f, size)
        assert 0 <= a < b <= n0 and 1 <= n <= size and 0 <= o <= size - n
        scaled = max(1, round(n0 * f))
        if scaled <= size:  # the whole axis, at its scaled length, somewhere in the crop
            assert (a, b, n) == (0, n0, scaled)
        else:  # a span that fills the crop at the drawn scale, to within a source pixel
            assert (n, o) == (size, 0)
            assert abs((b - a) * f - size) <= 2 * f + 1


def test_crop_window_reaches_both_ends():
    torch.manual_seed(0)
    starts = {crop_window(100, 2.0, 50)[0] for _ in range(400)}  # 200 scaled, crop 50
    offsets = {crop_window(20, 1.0, 50)[3] for _ in range(400)}  # 20 long, crop 50
    assert min(starts) == 0 and max(starts) >= 74  # the last crop starts at 150 / 2 = 75
    assert min(offsets) == 0 and max(offsets) == 30


def test_eval_transform_resizes_the_image_only():
    img, _ = coded_pair()
    out = eval_image_transform(24, MEAN, STD)(img)
    assert out.shape == (3, 24, 24)
