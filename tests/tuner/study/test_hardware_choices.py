"""The recommendation's QLoRA and gradient checkpointing: carried where the study used them, each with why."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from tuner.records import Recommendation, TrialRecord
from tuner.settings import DataSettings, StudySettings, TrainBudget
from tuner.study.summarise import hardware_choices


def study(quantize: str | None, asked: str | None, checkpointing=None) -> SimpleNamespace:
    settings = StudySettings(
        model="m", data=DataSettings("math"), trials=2, budget=TrainBudget(4096), memory_budget=8 << 30, quantize=asked
    )
    return SimpleNamespace(
        settings=settings,
        quantize=quantize,
        needs_checkpointing=lambda lora, drawn=None: checkpointing is not None and checkpointing(lora, drawn),
        runtime=SimpleNamespace(device=SimpleNamespace(type="cuda")),
    )


PICK = Recommendation("math", "m", 3, 2e-4, 256, 512.0, "all", "all-linear", 4)


def test_a_16_bit_pick_without_checkpointing_is_unchanged():
    assert hardware_choices(PICK, study(None, None), []) == PICK


def test_qlora_chosen_by_the_budget_and_checkpointing_the_pick_needs_are_carried_with_why():
    chosen = hardware_choices(PICK, study("nf4", None, checkpointing=lambda lora, drawn: lora.rank > 64), [])
    assert chosen.quantize == "nf4" and chosen.gradient_checkpointing
    assert "only 4-bit weights fit the memory budget of 8.00 GiB" in chosen.evidence["quantize"]
    assert "r=256 on all fits the memory budget of 8.00 GiB only when" in chosen.evidence["gradient_checkpointing"]
    assert "not yet measured on cuda" in chosen.evidence["gradient_checkpointing"]
    written = chosen.to_json()
    assert written["quantize"] == "nf4" and written["gradient_checkpointing"] is True
    assert "quantize" not in PICK.to_json() and "gradient_checkpointing" not in PICK.to_json()
    assert Recommendation.from_json(written) == chosen


def test_qlora_asked_for_says_so():
    chosen = hardware_choices(PICK, study("nf4", "nf4", checkpointing=lambda lora, drawn: False), [])
    assert "asked with --quantize nf4" in chosen.evidence["quantize"] and not chosen.gradient_checkpointing


def test_under_quantize_search_the_pick_keeps_its_own_base_and_its_checkpointing_asks_for_that_base():
    asked = []

    def checkpointing(lora, drawn):
        asked.append(drawn)
        return drawn == "none"  # a 16-bit trial needs it here, a QLoRA one does not

    params = {"learning_rate": 2e-4, "rank": 256, "alpha_multiple": 2.0, "targets": "all", "quantize": "nf4"}
    record = TrialRecord(3, "COMPLETE", params, value=0.9)
    qlora_pick = replace(PICK, quantize="nf4")
    chosen = hardware_choices(qlora_pick, study("search", "search", checkpointing), [record])
    assert chosen.quantize == "nf4" and not chosen.gradient_checkpointing and asked == ["nf4"]
    sixteen = replace(record, params={**params, "quantize": "none"})
    chosen = hardware_choices(PICK, study("search", "search", checkpointing), [sixteen])
    assert chosen.quantize is None and chosen.gradient_checkpointing
