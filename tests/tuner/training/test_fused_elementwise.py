"""The fused RMSNorm and rotary embedding give transformers' outputs and gradients, and leave to the model what they
do not cover."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from transformers.models.llama import modeling_llama  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb  # noqa: E402

from tuner.models.load import load_model, resolve_model  # noqa: E402
from tuner.training.fused_elementwise import fused_elementwise, fused_norms, fused_rotary, rms_norm, rotate  # noqa: E402
from tuner.training.runtime import pick_runtime  # noqa: E402


def _norm(size: int = 48) -> LlamaRMSNorm:
    norm = LlamaRMSNorm(size, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(size, generator=torch.Generator().manual_seed(2)) + 0.5)
    return norm


def _forward_and_grads(forward, norm, hidden, upstream):
    hidden = hidden.clone().requires_grad_(True)
    norm.weight.grad = None
    output = forward(hidden)
    output.backward(upstream)
    weight_grad = norm.weight.grad.clone() if norm.weight.grad is not None else None
    return output.detach(), hidden.grad, weight_grad


@pytest.mark.parametrize("weight_trains", [False, True])
def test_the_fused_norm_gives_the_module_s_output_and_gradients(weight_trains):
    norm = _norm()
    norm.weight.requires_grad_(weight_trains)
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(3, 7, 48, generator=generator) * 3
    upstream = torch.randn(3, 7, 48, generator=generator)
    # A non-contiguous input, as a transposed view gives.
    hidden = hidden.transpose(0, 1).contiguous().transpose(0, 1)
    expected = _forward_and_grads(norm, norm, hidden, upstream)
    ours = _forward_and_grads(lambda h: rms_norm(h, norm.weight, norm.variance_epsilon), norm, hidden, upstream)
    torch.testing.assert_close(ours[0], expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours[1], expected[1], rtol=1e-5, atol=1e-6)
    if weight_trains:
        torch.testing.assert_close(ours[2], expected[2], rtol=1e-5, atol=1e-5)
    else:
        assert ours[2] is None and expected[2] is None


def test_installed_for_training_steps_only_and_removed_after():
    norm = _norm()
    norm.weight.requires_grad_(False)
    hidden = torch.randn(2, 5, 48, requires_grad=True)
    with fused_norms(torch.nn.Sequential(norm)) as installed:
        assert installed == 1
        assert type(norm(hidden).grad_fn).__name__ == "_RmsNormBackward"
        with torch.no_grad():  # measuring: the module's own forward, bit for bit
            assert torch.equal(norm(hidden), LlamaRMSNorm.forward(norm, hidden))
        assert type(norm(hidden.double()).grad_fn).__name__ != "_RmsNormBackward"  # other dtypes: its own
    assert "forward" not in vars(norm)


def test_a_norm_that_computes_something_else_keeps_its_own():
    class GemmaLikeRMSNorm(torch.nn.Module):  # scales by 1 + weight, as Gemma's does
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(48))
            self.variance_epsilon = 1e-6

        def forward(self, hidden):
            variance = hidden.pow(2).mean(-1, keepdim=True)
            return hidden * torch.rsqrt(variance + self.variance_epsilon) * (1.0 + self.weight)

    with fused_norms(torch.nn.Sequential(GemmaLikeRMSNorm(), _norm())) as installed:
        assert installed == 1


def test_a_training_step_of_the_tiny_model_is_unchanged(tiny_model: Path):
    runtime = pick_runtime()
    model = load_model(resolve_model(str(tiny_model)), runtime.device, runtime.dtype)
    model.train()
    input_ids = torch.randint(0, model.config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))

    def loss_and_grads():
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=input_ids, labels=input_ids, use_cache=False).loss
        loss.backward()
        return float(loss.detach()), {name: p.grad.clone() for name, p in model.named_parameters()}

    expected, expected_grads = loss_and_grads()
    with fused_elementwise(model) as (norms, rotary):
        assert norms == 2 * 2 + 1 and rotary  # two norms per block, and the final norm
        assert modeling_llama.apply_rotary_pos_emb is not apply_rotary_pos_emb
        ours, our_grads = loss_and_grads()
    assert modeling_llama.apply_rotary_pos_emb is apply_rotary_pos_emb
    assert ours == pytest.approx(expected, rel=1e-6)
    for name, grad in expected_grads.items():
        torch.testing.assert_close(our_grads[name], grad, rtol=1e-4, atol=1e-6)


def test_the_fused_rotation_gives_transformers_output_and_gradients():
    generator = torch.Generator().manual_seed(3)
    # The projections' layout: [batch, length, heads, dim] seen as [batch, heads, length, dim].
    q = torch.randn(2, 5, 3, 8, generator=generator).transpose(1, 2).requires_grad_(True)
    k = torch.randn(2, 5, 1, 8, generator=generator).transpose(1, 2).requires_grad_(True)
    angles = torch.randn(2, 5, 8, generator=generator)
    cos, sin = angles.cos(), angles.sin()
    upstream_q, upstream_k = torch.randn(2, 3, 5, 8, generator=generator), torch.randn(2, 1, 5, 8, generator=generator)

    def outputs_and_grads(apply):
        q_out, k_out = apply(q, k)
        grads = torch.autograd.grad((q_out, k_out), (q, k), (upstream_q, upstream_k))
        return q_out.detach(), k_out.detach(), *grads

    expected = outputs_and_grads(lambda q, k: apply_rotary_pos_emb(q, k, cos, sin))
    ours = outputs_and_grads(lambda q, k: (rotate(q, cos, sin), rotate(k, cos, sin)))
    for mine, theirs in zip(ours, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_the_rotary_embedding_is_the_model_s_own_where_it_is_not_a_float32_training_step(tiny_model: Path):
    runtime = pick_runtime()
    model = load_model(resolve_model(str(tiny_model)), runtime.device, runtime.dtype)
    with fused_rotary(model) as fused:
        assert fused
        patched = modeling_llama.apply_rotary_pos_emb
        q, k, cos, sin = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 3, 8), torch.randn(1, 3, 8), torch.randn(1, 3, 8)
        with torch.no_grad():  # measuring: transformers' own, bit for bit
            for mine, theirs in zip(patched(q, k, cos, sin), apply_rotary_pos_emb(q, k, cos, sin), strict=True):
                assert torch.equal(mine, theirs)
        doubled = patched(q.double().requires_grad_(True), k.double(), cos.double(), sin.double())  # not float32
        assert type(doubled[0].grad_fn).__name__ != "_RotaryBackward"
        assert type(patched(q.requires_grad_(True), k, cos, sin)[0].grad_fn).__name__ == "_RotaryBackward"
        with fused_rotary(model) as again:  # nested: already fused, left as it is
            assert not again and modeling_llama.apply_rotary_pos_emb is patched
    assert modeling_llama.apply_rotary_pos_emb is apply_rotary_pos_emb
    with fused_rotary(model):  # the same stand-in each time, so compiled layers need not recompile for it
        assert modeling_llama.apply_rotary_pos_emb is patched
