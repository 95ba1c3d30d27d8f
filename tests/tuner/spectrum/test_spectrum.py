"""The rank of ΔW for 90 % of its variance: the pure helper, ΔW of an adapter, the report's JSON and observations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from tuner.errors import AdvisorError
from tuner.spectrum.adapter import adapter_factors, adapter_spectrum
from tuner.spectrum.rank import MatrixSpectrum, layer_module, matrix_spectrum, rank_for_variance
from tuner.spectrum.report import SPECTRUM_VERSION, SpectrumReport, write_heatmap
from tuner.spectrum.weights import StateDictWeights


@pytest.mark.parametrize(
    ("singular_values", "share", "rank"),
    [
        ([3.0, 1.0], 0.9, 1),  # 9 of 10 is exactly 90 %
        ([1.0, 3.0], 0.9, 1),  # any order
        ([1.0, 1.0, 1.0], 0.9, 3),  # equal values: all of them
        ([1.0] * 10, 0.9, 9),
        ([2.0, 1.0, 1.0], 0.9, 3),  # 4 + 1 of 6 is 83 %
        ([1.0, 1.0, 1.0, 1.0], 0.5, 2),
        ([5.0, 0.0, 0.0], 0.9, 1),
        ([0.0, 0.0], 0.9, 0),  # an unchanged matrix
        ([], 0.9, 0),
    ],
)
def test_rank_for_variance(singular_values, share, rank):
    assert rank_for_variance(singular_values, share) == rank


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_rank_for_variance_refuses_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match="share"):
        rank_for_variance([1.0], share)


def test_a_rank_3_change_needs_at_most_rank_3():
    torch.manual_seed(0)
    delta = torch.randn(64, 3) @ torch.randn(3, 48)
    assert 1 <= matrix_spectrum(0, "q_proj", (64, 48), torch.linalg.svdvals(delta).tolist()).rank_90 <= 3
    noisy = delta + 1e-4 * torch.randn(64, 48)
    assert 1 <= matrix_spectrum(0, "q_proj", (64, 48), torch.linalg.svdvals(noisy).tolist()).rank_90 <= 3


def test_a_change_with_3_equal_singular_values_needs_exactly_3():
    torch.manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(64, 3))
    right, _ = torch.linalg.qr(torch.randn(48, 3))
    delta = 2.0 * left @ right.T
    spectrum = matrix_spectrum(2, "down_proj", (64, 48), torch.linalg.svdvals(delta).tolist())
    assert spectrum.rank_90 == 3
    assert spectrum.frobenius == pytest.approx(2.0 * math.sqrt(3), rel=1e-5)
    assert spectrum.top_singular_values[:3] == pytest.approx((2.0, 2.0, 2.0), rel=1e-5)


def test_a_full_rank_random_change_needs_most_of_its_rank():
    torch.manual_seed(0)
    delta = torch.randn(64, 48)
    assert matrix_spectrum(0, "up_proj", (64, 48), torch.linalg.svdvals(delta).tolist()).rank_90 > 24


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("model.layers.3.mlp.up_proj", (3, "up_proj")),
        ("model.layers.12.self_attn.o_proj.weight", (12, "o_proj")),
        ("model.layers.0.input_layernorm.weight", None),
        ("lm_head.weight", None),
        ("model.embed_tokens.weight", None),
    ],
)
def test_layer_module(path, found):
    assert layer_module(path) == found


def write_adapter(directory: Path, config: dict, factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> Path:
    """A PEFT adapter directory as save_pretrained writes it, from (lora_A, lora_B) per module path."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
    tensors = {}
    for path, (a, b) in factors.items():
        tensors[f"base_model.model.{path}.lora_A.weight"] = a.contiguous()
        tensors[f"base_model.model.{path}.lora_B.weight"] = b.contiguous()
    save_file(tensors, str(directory / "adapter_model.safetensors"))
    return directory


def random_factors(rank: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    return {
        "model.layers.0.self_attn.q_proj": (torch.randn(rank, 32), torch.randn(32, rank)),
        "model.layers.0.mlp.down_proj": (torch.randn(rank, 64), torch.randn(32, rank)),
        "model.layers.1.mlp.up_proj": (torch.randn(rank, 32), torch.randn(64, rank)),
    }


@pytest.mark.parametrize(
    ("extra", "scaling"),
    [({}, 16.0 / 4), ({"use_rslora": True}, 16.0 / 2), ({"alpha_pattern": {"q_proj": 4}}, None)],
    ids=["lora", "rslora", "alpha_pattern"],
)
def test_adapter_delta_is_scaling_times_b_a(tmp_path, extra, scaling):
    factors = random_factors(4)
    directory = write_adapter(tmp_path / "adapter", {"r": 4, "lora_alpha": 16, **extra}, factors)
    read = adapter_factors(directory)
    assert list(read) == list(factors)  # in layer order
    for path, (a, b) in factors.items():
        expected_scaling = scaling if scaling is not None else (4 / 4 if "q_proj" in path else 16 / 4)
        assert read[path].scaling == pytest.approx(expected_scaling)
        delta = read[path].delta()
        torch.testing.assert_close(delta, expected_scaling * b @ a)
        full = torch.linalg.svdvals(delta)[:4]
        torch.testing.assert_close(read[path].singular_values(), full, rtol=1e-4, atol=1e-4)


def base_like(factors: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> StateDictWeights:
    return StateDictWeights({f"{path}.weight": torch.zeros(b.shape[0], a.shape[1]) for path, (a, b) in factors.items()})


def test_an_adapters_spectrum_needs_at_most_its_rank(tmp_path):
    factors = random_factors(4)
    directory = write_adapter(tmp_path / "adapter", {"r": 4, "lora_alpha": 8}, factors)
    report = adapter_spectrum(directory, base_like(factors), "tiny")
    assert report.kind == "adapter" and report.lora_rank == 4 and report.lora_alpha == 8
    assert [(m.layer, m.module, m.shape) for m in report.matrices] == [
        (0, "q_proj", (32, 32)),
        (0, "down_proj", (32, 64)),
        (1, "up_proj", (64, 32)),
    ]
    assert all(1 <= m.rank_90 <= 4 for m in report.matrices)


def test_an_adapter_for_another_model_names_the_module_and_both_shapes(tmp_path):
    factors = random_factors(4)
    directory = write_adapter(tmp_path / "adapter", {"r": 4, "lora_alpha": 8}, factors)
    base = base_like(factors)
    base.state_dict["model.layers.0.mlp.down_proj.weight"] = torch.zeros(48, 96)
    with pytest.raises(AdvisorError, match=r"model\.layers\.0\.mlp\.down_proj is 32x64 in the adapter .* 48x96"):
        adapter_spectrum(directory, base, "tiny")
    del base.state_dict["model.layers.0.mlp.down_proj.weight"]
    with pytest.raises(AdvisorError, match=r"adapts model\.layers\.0\.mlp\.down_proj, which the base model lacks"):
        adapter_spectrum(directory, base, "tiny")


def matrix(layer: int, module: str, rank: int, size: int = 64) -> MatrixSpectrum:
    return MatrixSpectrum(layer, module, (size, size), rank, float(rank), (1.0,) * min(rank, 8))


def report_of(ranks: dict[tuple[int, str], int], kind: str = "full", size: int = 64, **extra) -> SpectrumReport:
    matrices = tuple(matrix(layer, module, rank, size) for (layer, module), rank in ranks.items())
    return SpectrumReport(source="/runs/x", kind=kind, base_model="tiny", matrices=matrices, **extra)


def test_json_round_trip():
    report = report_of(
        {(0, "q_proj"): 3, (0, "up_proj"): 5, (1, "q_proj"): 0}, kind="adapter", lora_rank=8, lora_alpha=16.0
    )
    payload = json.loads(json.dumps(report.to_json()))
    assert payload["version"] == SPECTRUM_VERSION
    assert payload["median_rank_by_type"] == {"attention": 3, "mlp": 5}  # the unchanged q_proj of layer 1 left out
    assert SpectrumReport.from_json(payload) == report


def test_from_json_refuses_a_newer_version():
    payload = {**report_of({(0, "q_proj"): 3}).to_json(), "version": SPECTRUM_VERSION + 1}
    with pytest.raises(ValueError, match="version"):
        SpectrumReport.from_json(payload)


def holds(report: SpectrumReport) -> list[bool | None]:
    return [observation.holds for observation in report.observations()]


def test_observations_as_the_paper_found():
    ranks = {}
    for layer, middle in ((0, False), (1, True), (2, True), (3, False)):
        ranks[(layer, "q_proj")] = 180 if middle else 160
        ranks[(layer, "down_proj")] = 300 if middle else 250
    report = report_of(ranks, size=512)
    assert holds(report) == [True, True, True]
    mlp, ends, factor = report.observations()
    assert mlp.evidence == "median rank_90: MLP 275, attention 170"
    assert ends.evidence == "mean rank_90: layers 0 and 3 205, layers 1-2 240"
    assert factor.evidence.startswith("median rank_90 215 = 13.4x r=16")


def test_observations_against_the_paper():
    ranks = {(0, "q_proj"): 40, (0, "up_proj"): 20, (1, "q_proj"): 10, (1, "up_proj"): 5}
    ranks |= {(2, "q_proj"): 40, (2, "up_proj"): 20}
    assert holds(report_of(ranks, size=512)) == [False, False, False]


def test_observations_that_cannot_be_told():
    two_layers = report_of({(0, "q_proj"): 3, (1, "q_proj"): 4})
    mlp, ends, factor = two_layers.observations()
    assert (mlp.holds, mlp.evidence) == (None, "no changed mlp matrices")
    assert ends.holds is None and "at least 3" in ends.evidence
    assert factor.holds is None and "too small to tell" in factor.evidence  # 64 < 10 x 16
    adapter = report_of({(0, "q_proj"): 3, (0, "up_proj"): 4}, kind="adapter", size=512, lora_rank=4)
    assert adapter.observations()[2].holds is None
    assert adapter.observations()[2].evidence == "does not apply to an adapter: an adapter's ΔW has rank at most r=4"


def test_heatmap_is_a_png(tmp_path):
    report = report_of({(0, "q_proj"): 3, (0, "up_proj"): 5, (1, "q_proj"): 0}, kind="adapter", lora_rank=8)
    path = write_heatmap(report, tmp_path / "deep" / "spectrum.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
