"""Segmentation model: output shapes, gradients, and loading a pretrained MAE encoder."""

import pytest
import torch

from vitmae.config import Config, ModelConfig
from vitmae.models import build_finetune_model, build_mae
from vitmae.models.seg_heads import level_indices
from vitmae.models.segmenter import build_segmenter
from vitmae.weights.encoder import load_encoder

MICRO = dict(embed_dim=32, depth=2, num_heads=2, drop_path=0.0)


@pytest.mark.parametrize("head", ["linear", "pup"])
@pytest.mark.parametrize("patch,size", [(4, 16), (4, (24, 32)), (8, 32), (14, 28), (16, 32)])
def test_logits_at_input_resolution(head, patch, size):
    model = build_segmenter(ModelConfig(seg_head=head, patch_size=patch, **MICRO), size,
                            in_chans=3, num_classes=5)
    H, W = (size, size) if isinstance(size, int) else size
    assert model(torch.randn(2, 3, H, W)).shape == (2, 5, H, W)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_pup_convolutions_run_channels_last(in_chans):
    # the CPU's small 3x3 convolutions are 1.5-2.5x faster channels-last; a concatenation with
    # the NCHW image comes out NCHW, so each stage has to convert back
    model = build_segmenter(ModelConfig(seg_head="pup", patch_size=8, **MICRO), 32, in_chans, 5)
    convs = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)]
    seen = []
    for conv in convs:
        conv.register_forward_pre_hook(lambda m, args: seen.append(
            args[0].is_contiguous(memory_format=torch.channels_last)))
    model(torch.randn(2, in_chans, 32, 32))
    assert len(seen) == len(convs) > 3 and all(seen)


def test_gradients_come_in_their_parameters_layout():
    # DDP's gradient buckets take each parameter's strides: a channels-last gradient of an
    # NCHW-laid weight makes it warn on every rank ("Grad strides do not match bucket view
    # strides") and copy, so the head's weights are laid channels-last like their inputs.
    # Which layout a convolution's weight gradient takes depends on the batch and the thread
    # count: at 16 images and one thread the 1x1 classifier's came out channels-last
    model = build_segmenter(ModelConfig(seg_head="pup", patch_size=8, **MICRO), 32, 1, 5)
    model(torch.randn(16, 1, 32, 32)).sum().backward()
    odd = [n for n, p in model.named_parameters() if p.grad.stride() != p.stride()]
    assert not odd


def test_level_indices_are_evenly_spaced_and_end_at_the_last_block():
    assert level_indices(12, 4) == [2, 5, 8, 11]
    assert level_indices(24, 4) == [5, 11, 17, 23]
    assert level_indices(2, 4) == [0, 1]


@pytest.mark.parametrize("head", ["linear", "pup"])
def test_every_parameter_gets_a_gradient(head):
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(seg_head=head, **MICRO), 16, 1, 4)
    logits = model(torch.randn(2, 1, 16, 16))
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, 16, 16))).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad


@pytest.mark.parametrize("extra", [{}, {"rope": True, "seg_aux": 0.4}])
def test_pretrained_mae_encoder_loads_with_no_missing_key(extra):
    cfg = Config(task="segment")
    cfg.model = ModelConfig(seg_head="pup", decoder_embed_dim=32, decoder_depth=1,
                            decoder_num_heads=2, **MICRO, **extra)
    cfg.data.img_size = 16
    mae = build_mae(cfg.model, 16, 1)
    model, encoder, prefix = build_finetune_model(cfg, in_chans=1, num_classes=11)
    assert prefix == "encoder." and encoder is model.encoder and encoder.num_classes == 0
    assert load_encoder(encoder, mae.state_dict(), log=lambda *_: None) == set()
    torch.testing.assert_close(encoder.blocks[0].attn.qkv.weight,
                               mae.encoder.blocks[0].attn.qkv.weight)


def fit_pixel_threshold(head: str, steps: int = 60) -> float:
    """Train a micro segmenter where a pixel's class is whether it is above 0.5 (noise images,
    so that only the pixel itself tells); -> pixel accuracy on fresh images."""
    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(seg_head=head, **MICRO), 16, 1, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.rand(8, 1, 16, 16)
        loss = torch.nn.functional.cross_entropy(model(x), (x[:, 0] > 0.5).long())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.rand(8, 1, 16, 16)
    with torch.no_grad():
        return (model(x).argmax(1) == (x[:, 0] > 0.5)).float().mean().item()


def test_pup_head_takes_edges_from_the_pixels_where_a_linear_head_cannot():
    # the linear head decides per 4x4 patch (upsampled), so it is at best a coin toss here
    assert fit_pixel_threshold("pup") > 0.97
    assert fit_pixel_threshold("linear") < 0.8


def test_auxiliary_head_reads_a_middle_block_in_training_only():
    torch.manual_seed(0)
    cfg = ModelConfig(seg_head="pup", seg_aux=0.4, **{**MICRO, "depth": 4})
    model = build_segmenter(cfg, 16, 1, 4).train()
    assert model.aux_head.indices == [model.head.indices[-2]] and model.head.indices[-1] == 3
    x = torch.randn(2, 1, 16, 16)
    logits, aux = model(x)
    assert logits.shape == aux.shape == (2, 4, 16, 16)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits)  # eval: the main logits only
        tokens = model.encoder.block_tokens(x, model.aux_head.indices)[0]
        expected = model.aux_head([model.aux_norm(tokens)], (4, 4), x)
    torch.testing.assert_close(aux, expected)  # no dropout anywhere: train == eval


def test_task_loss_adds_the_weighted_auxiliary_loss_and_every_parameter_learns():
    from vitmae.tasks import build_task

    torch.manual_seed(0)
    model = build_segmenter(ModelConfig(seg_head="pup", seg_aux=0.4, **MICRO), 16, 1, 4).train()
    x, y = torch.randn(2, 1, 16, 16), torch.randint(0, 4, (2, 16, 16))
    y[0, :3] = 255  # void
    loss, _ = build_task("segment", num_classes=4, aux_weight=0.4).train_step(model, (x, y))
    logits, aux = model(x)
    ce = lambda z: torch.nn.functional.cross_entropy(z, y, ignore_index=255)  # noqa: E731
    torch.testing.assert_close(loss, ce(logits) + 0.4 * ce(aux))
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not no_grad
