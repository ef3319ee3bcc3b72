"""The causal streaming Mamba: step by step over 60 s of real audio equals the full forward pass, its state
has a constant size, it is causal, and it learns from clip labels."""

from __future__ import annotations

import copy

import pytest
import torch

from models.registry import build_model
from models.streaming_mamba import COLUMN_FRAMES, StreamingMamba, StreamingMambaConfig


def small_model(seed: int = 0, **overrides) -> StreamingMamba:
    torch.manual_seed(seed)
    values = {"num_classes": 10, "d_model": 64, "n_layers": 3, **overrides}
    return StreamingMamba(StreamingMambaConfig(**values)).eval()


def test_default_model_is_built_by_name_and_has_the_recurrent_interface():
    model = build_model("streaming_mamba", {"num_classes": 50})
    assert isinstance(model, StreamingMamba) and model.recurrent and model.column_frames == 16
    assert model.num_classes == 50
    assert sum(p.numel() for p in model.parameters()) < 3_000_000  # small enough to run live on a CPU


def test_step_by_step_over_a_minute_of_real_audio_equals_full_forward(real_minute):
    model = build_model("streaming_mamba", {"num_classes": 50}).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():  # trained-looking, not init-looking, weights
            p.add_(torch.randn_like(p) * 0.02)
        full = model.forward_steps(real_minute)  # (1, S, C)
        state = model.init_state(1)
        shapes = {k: v.shape for k, v in state.items()}
        steps = []
        for s in range(full.shape[1]):
            logits, state = model.step(real_minute[:, s * COLUMN_FRAMES : (s + 1) * COLUMN_FRAMES], state)
            steps.append(logits)
            assert {k: v.shape for k, v in state.items()} == shapes  # constant-size state
    assert full.shape == (1, real_minute.shape[1] // COLUMN_FRAMES, 50) and full.shape[1] == 374
    assert (torch.stack(steps, dim=1) - full).abs().max() <= 1e-4
    assert full.abs().max() > 0.1  # the comparison is not between vanishing numbers


def test_state_is_explicit_per_layer_conv_and_ssm():
    model = small_model()
    state = model.init_state(2)
    d_inner = model.layers[0].mixer.d_inner
    assert set(state) == {f"{kind}{i}" for kind in ("conv", "ssm") for i in range(3)}
    assert state["conv0"].shape == (2, d_inner, 4) and state["ssm2"].shape == (2, d_inner, 16)


def test_forward_is_the_last_column_and_trailing_frames_are_ignored():
    model = small_model(1)
    x = torch.randn(2, 500, 128)
    with torch.no_grad():
        steps = model.forward_steps(x)
        last = model(x)
        cut = model.forward_steps(x[:, : 31 * COLUMN_FRAMES])
    assert steps.shape == (2, 31, 10)
    torch.testing.assert_close(last, steps[:, -1])
    torch.testing.assert_close(cut, steps)


def test_outputs_are_causal():
    model = small_model(2)
    x = torch.randn(1, 320, 128)
    changed = x.clone()
    changed[:, 160:] = torch.randn(1, 160, 128)
    with torch.no_grad():
        a, b = model.forward_steps(x), model.forward_steps(changed)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert (a[:, 10:] - b[:, 10:]).abs().max() > 1e-3


def test_bad_shapes_are_rejected():
    model = small_model()
    with pytest.raises(ValueError, match="at least 16 frames"):
        model.forward_steps(torch.zeros(1, 15, 128))
    with pytest.raises(ValueError, match="mel bins"):
        model.forward_steps(torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="column"):
        model.step(torch.zeros(1, 10, 128), model.init_state(1))


def test_learns_clip_labels_from_the_last_steps(real_windows):
    """A few steps of the documented training target (cross-entropy on the last columns) fit 4 real clips."""
    model = small_model(3, num_classes=4, dropout=0.0).train()  # default clip_steps: 16
    labels = torch.arange(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        logits = model.last_steps_logits(real_windows)  # (4, 16, C)
        assert logits.shape == (4, 16, 4)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(16))

    with torch.no_grad():
        first = float(loss())
    for _ in range(30):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert float(loss()) < 0.5 * first
        assert (model(real_windows).argmax(-1) == labels).all()


def test_conv_stem_steps_equal_the_full_forward_and_stay_causal(real_minute):
    """The per-column CNN stem keeps both promises of the linear one: step == forward_steps, no look-ahead."""
    model = small_model(4, stem="conv", stem_channels=8)
    with torch.no_grad():
        for p in model.parameters():  # trained-looking weights, BatchNorm statistics included
            p.add_(torch.randn_like(p) * 0.02)
        for buffer in model.buffers():
            if buffer.is_floating_point():
                buffer.add_(torch.rand_like(buffer) * 0.1)
        x = real_minute[:, :1600]
        full = model.forward_steps(x)
        state, steps = model.init_state(1), []
        for s in range(full.shape[1]):
            logits, state = model.step(x[:, s * COLUMN_FRAMES : (s + 1) * COLUMN_FRAMES], state)
            steps.append(logits)
        changed = x.clone()
        changed[:, 800:] = torch.randn(1, 800, 128)
        altered = model.forward_steps(changed)
    assert (torch.stack(steps, dim=1) - full).abs().max() <= 1e-4 and full.abs().max() > 0.05
    torch.testing.assert_close(altered[:, :50], full[:, :50])
    assert (altered[:, 50:] - full[:, 50:]).abs().max() > 1e-3


def test_conv_stem_settings_are_checked():
    with pytest.raises(ValueError, match="stem must be"):
        StreamingMambaConfig(stem="mlp")
    with pytest.raises(ValueError, match="divisible by 4"):
        StreamingMambaConfig(stem="conv", num_mel_bins=66)


@pytest.mark.parametrize("stem", ["linear", "conv"])
def test_inference_form_steps_equal_the_plain_model(real_minute, stem):
    """``optimise_for_inference`` keeps each mixer's step constants and takes a fused float32 step; over a
    minute of real columns its results and states equal the plain model's; under bf16 autocast it takes
    the plain step; the state dict is unchanged."""
    plain = small_model(seed=3, num_mel_bins=128, stem=stem)
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    served = copy.deepcopy(plain).optimise_for_inference()
    assert all(block.mixer.frozen for block in served.blocks())
    constants = ("_conv_taps", "_conv_bias", "_A", "_D_fp32")
    assert not any(key.endswith(constants) for key in served.state_dict())  # checkpoints as before
    unfrozen = copy.deepcopy(served)
    for block in unfrozen.blocks():
        block.mixer.frozen = False
    columns = real_minute[:, : 40 * COLUMN_FRAMES].split(COLUMN_FRAMES, dim=1)
    with torch.inference_mode():
        a, b = plain.init_state(1), served.init_state(1)
        for column in columns:
            out_a, a = plain.step(column, a)
            out_b, b = served.step(column, b)
            torch.testing.assert_close(out_b, out_a, atol=1e-4, rtol=0)
        for key in a:
            torch.testing.assert_close(b[key], a[key], atol=1e-4, rtol=1e-4)
    mixer, plain_mixer = served.blocks()[0].mixer, unfrozen.blocks()[0].mixer
    hidden = served.embed(torch.cat(columns[:8], dim=1).reshape(1, 8, -1)).detach()
    conv, ssm = mixer.init_state(1)
    with torch.inference_mode():
        fp32 = (mixer(hidden), mixer.forward_chunk(hidden, conv, ssm), mixer.step(hidden[:, 0], conv, ssm))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = (mixer(hidden), mixer.forward_chunk(hidden, conv, ssm), mixer.step(hidden[:, 0], conv, ssm))
            plain_low = plain_mixer(hidden)
    flat_low, flat_fp32 = [low[0], *low[1], *low[2]], [fp32[0], *fp32[1], *fp32[2]]
    for a, b in zip(flat_low, flat_fp32, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, b)  # a served mixer leaves autocast
    assert plain_low.dtype == torch.bfloat16  # the training form keeps bf16 matmuls
