"""The defaults follow what the device can do, and the proposal for a corpus follows its size."""
from __future__ import annotations

import pytest

from textgen_core import defaults
from textgen_core.defaults import defaults_for, propose_settings, recommended_run_settings


@pytest.mark.parametrize("has_bf16, precision, words", [(True, "bf16", "has bf16 units"),
                                                        (False, "fp32", "no bf16 units")])
def test_cpu_defaults_follow_the_cpus_bf16_units(monkeypatch, has_bf16, precision, words):
    monkeypatch.setattr(defaults, "bf16_supported", lambda device: has_bf16)
    monkeypatch.setattr(defaults, "cpu_summary", lambda: "Some CPU (avx2 fma)")
    monkeypatch.setattr(defaults, "cpu_flags", lambda: ("avx2", "fma", *(("avx512_bf16",) if has_bf16 else ())))
    settings, reason = defaults_for("cpu")
    assert settings["precision"] == precision and settings["cpu_threads"] == 1 and settings["dropout"] == 0.0
    assert reason.startswith("CPU defaults for Some CPU (avx2 fma): ") and words in reason
    assert recommended_run_settings("cpu").train.precision == precision
    assert propose_settings(1_000_000, "cpu").reasons[0] == reason


def test_a_cpu_with_amx_trains_on_every_core_with_dropout(monkeypatch):
    """Measured on a 2-core Xeon with AMX: two threads 1.34x one, and twice the steps need dropout."""
    monkeypatch.setattr(defaults, "cpu_flags", lambda: ("avx2", "avx512_bf16", "amx_tile", "amx_bf16"))
    monkeypatch.setattr(defaults, "bf16_supported", lambda device: True)
    monkeypatch.setattr(defaults, "cpu_summary", lambda: "Some Xeon (amx_bf16)")
    settings, reason = defaults_for("cpu")
    assert (settings["precision"], settings["dropout"], settings["cpu_threads"]) == ("bf16", 0.1, None)
    assert reason.startswith("CPU defaults for Some Xeon (amx_bf16): it has AMX bf16 units")
    proposal = propose_settings(1_000_000, "cpu")
    assert proposal.steps_per_s == defaults.AMX_SMALL_STEPS_PER_S and proposal.reasons[0] == reason


def test_defaults_are_a_new_dict_each_call():
    first, _ = defaults_for("cpu")
    first["lr"] = 123.0
    assert defaults_for("cpu")[0]["lr"] != 123.0


@pytest.mark.parametrize("chars", [4_000, 100_000, 1_000_000])
def test_proposals_evaluate_often_enough_and_stop_a_short_text_early(chars):
    proposal = propose_settings(chars, "cpu")
    values = proposal.settings
    steps = proposal.steps_per_s * 60 * values["max_minutes"]   # the rate measured for this CPU type
    assert steps / values["eval_every"] >= 12                 # a curve with at least 12 points
    assert values["eval_every"] >= 10
    epoch_steps = 0.9 * chars / (values["batch_size"] * values["seq_len"])
    assert proposal.epochs == pytest.approx(steps / epoch_steps)
    if chars < defaults.SHORT_TEXT_CHARS:
        assert values["preset"] == "tiny" and values["patience"] and values["dropout"] >= 0.3
        assert values["max_minutes"] <= 2
    elif chars >= defaults.MEDIUM_TEXT_CHARS:
        assert not values.get("patience") and values["preset"] == defaults.CPU_DEFAULTS["preset"]
    assert any("evaluation every" in reason for reason in proposal.reasons)


def test_a_proposal_is_valid_settings():
    for chars in (1, 4_000, 10**9):
        values = propose_settings(chars, "cpu").settings
        recommended_run_settings("cpu", **values).train.validated()
