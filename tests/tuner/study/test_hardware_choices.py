"""The recommendation's QLoRA and gradient checkpointing: carried where the study used them, each with why."""

from __future__ import annotations

from types import SimpleNamespace

from tuner.records import Recommendation
from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.summarise import hardware_choices


def study(quantize: str | None, asked: str | None, checkpointing=None) -> SimpleNamespace:
    settings = StudySettings(
        model="m", data=DataSettings("math"), trials=2, budget=TrainBudget(4096), memory_budget=8 << 30, quantize=asked
    )
    return SimpleNamespace(
        settings=settings,
        quantize=quantize,
        needs_checkpointing=lambda lora: checkpointing is not None and checkpointing(lora),
        runtime=SimpleNamespace(device=SimpleNamespace(type="cuda")),
    )


PICK = Recommendation("math", "m", 3, 2e-4, 256, 512.0, "all", "all-linear", 4)


def test_a_16_bit_pick_without_checkpointing_is_unchanged():
    assert hardware_choices(PICK, study(None, None)) == PICK


def test_qlora_chosen_by_the_budget_and_checkpointing_the_pick_needs_are_carried_with_why():
    chosen = hardware_choices(PICK, study("nf4", None, checkpointing=lambda lora: lora.rank > 64))
    assert chosen.quantize == "nf4" and chosen.gradient_checkpointing
    assert "only 4-bit weights fit the memory budget of 8.00 GiB" in chosen.evidence["quantize"]
    assert "r=256 on all fits the memory budget of 8.00 GiB only when" in chosen.evidence["gradient_checkpointing"]
    assert "not yet measured on cuda" in chosen.evidence["gradient_checkpointing"]
    written = chosen.to_json()
    assert written["quantize"] == "nf4" and written["gradient_checkpointing"] is True
    assert "quantize" not in PICK.to_json() and "gradient_checkpointing" not in PICK.to_json()
    assert Recommendation.from_json(written) == chosen


def test_qlora_asked_for_says_so():
    chosen = hardware_choices(PICK, study("nf4", "nf4", checkpointing=lambda lora: False))
    assert "asked with --quantize nf4" in chosen.evidence["quantize"] and not chosen.gradient_checkpointing
