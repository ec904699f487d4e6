"""The defaults follow what the device can do, and the proposal for a corpus follows its size."""
from __future__ import annotations

import pytest

from textgen_core import defaults
from textgen_core.defaults import defaults_for, propose_settings, recommended_run_settings


@pytest.mark.parametrize("has_bf16, cores, expected, words, steps_per_s", [
    (True, 2, ("lstm", "bf16", 1, 0.0), "has bf16 units", defaults.CPU_STEPS_PER_S["small"]),  # AMD EPYC
    (False, 2, ("gru", "fp32", 2, 0.0), "no bf16 units", defaults.NO_BF16_SMALL_STEPS_PER_S["cores"]),
    (False, 1, ("gru", "fp32", 1, 0.0), "one physical core", defaults.NO_BF16_SMALL_STEPS_PER_S["one core"]),
])
def test_cpu_defaults_follow_the_cpus_bf16_units_and_cores(monkeypatch, has_bf16, cores, expected, words,
                                                            steps_per_s):
    flags = ("avx2", "fma", *(("avx512_bf16",) if has_bf16 else ()))
    monkeypatch.setattr(defaults, "bf16_supported", lambda device: has_bf16)
    monkeypatch.setattr(defaults, "cpu_summary", lambda: "Some CPU (avx2 fma)")
    monkeypatch.setattr(defaults, "usable_cpu_flags", lambda: flags)
    monkeypatch.setattr(defaults, "bf16_held_back", lambda: False)
    monkeypatch.setattr(defaults, "physical_cores", lambda: cores)
    settings, reason = defaults_for("cpu")
    assert (settings["arch"], settings["precision"], settings["cpu_threads"], settings["dropout"]) == expected
    # weight decay 0.1 where it was measured better (the fp32 GRU); TrainConfig's 0.01 elsewhere
    assert settings.get("weight_decay", 0.01) == (0.01 if has_bf16 else 0.1)
    assert reason.startswith("CPU defaults for Some CPU (avx2 fma): ") and words in reason
    assert reason.endswith(f"{expected[0].upper()} 256x2, batch 32 x 64")
    run = recommended_run_settings("cpu")
    assert (run.arch, run.train.precision, run.train.cpu_threads, run.dropout) == expected
    long_text = propose_settings(1_000_000, "cpu")
    assert long_text.reasons[0] == reason and long_text.steps_per_s == steps_per_s   # the epochs it estimates
    # the state carried where it was measured better (fp32); random windows for a short text, read many times
    assert long_text.settings.get("carry_state", False) == (not has_bf16) == ("state carried" in reason)
    short_text = propose_settings(4_000, "cpu")
    assert short_text.settings["arch"] == expected[0] and f"a tiny {expected[0].upper()} with" in short_text.reasons[1]
    assert short_text.settings["carry_state"] is False and "from random places" in short_text.reasons[1]


def test_a_cpu_with_amx_trains_on_every_core_with_dropout(monkeypatch):
    """Measured on a 2-core Xeon with AMX: two threads 1.34x one, and twice the steps need dropout."""
    monkeypatch.setattr(defaults, "usable_cpu_flags", lambda: ("avx2", "avx512_bf16", "amx_tile", "amx_bf16"))
    monkeypatch.setattr(defaults, "bf16_supported", lambda device: True)
    monkeypatch.setattr(defaults, "cpu_summary", lambda: "Some Xeon (amx_bf16)")
    settings, reason = defaults_for("cpu")
    assert (settings["precision"], settings["dropout"], settings["cpu_threads"]) == ("bf16", 0.1, None)
    assert settings["carry_state"] and "the state carried between steps" in reason
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
    evaluations = steps / values["eval_every"]
    assert evaluations >= 3.9 and values["eval_every"] >= 10    # a curve with at least 4 points
    val_steps = 0.1 * chars / (values["batch_size"] * values["seq_len"])
    share = evaluations * defaults.eval_cost_steps(val_steps) / steps
    assert evaluations >= 11.5 or share <= 1.1 * defaults.EVAL_SHARE  # 12 unless they would cost too much
    epoch_steps = 0.9 * chars / (values["batch_size"] * values["seq_len"])
    assert proposal.epochs == pytest.approx(steps / epoch_steps)
    if chars < defaults.SHORT_TEXT_CHARS:
        assert values["preset"] == "tiny" and values["patience"] and values["dropout"] >= 0.3
        assert values["max_minutes"] <= 2
    elif chars >= defaults.MEDIUM_TEXT_CHARS:
        assert not values.get("patience") and values["preset"] == defaults.CPU_DEFAULTS["preset"]
    assert any("evaluation every" in reason for reason in proposal.reasons)


@pytest.mark.parametrize("budget, epoch, val, every", [
    (1380, 439, 54.5, 270),    # tiny Shakespeare on one AVX2 core: 12 evaluations would be 19% of it, 5 are 8%
    (2130, 439, 54.5, 270),    # on two cores: 7.8 evaluations fit in 8%, at the same interval
    (8100, 439, 54.5, 680),    # on AMX: 12 fit in 3%
    (1700, 40, 5.5, 80),       # a short text: every two epochs, more than 12
    (1380, 4390, 545.0, 340),  # a long one: 4, although they take more than 8%
    (5, 1, 0.1, 10),           # never more often than every 10 steps
])
def test_evaluations_take_a_small_share_of_the_budget_but_draw_a_curve(budget, epoch, val, every):
    assert defaults.cpu_eval_every(budget, epoch, val) == every


def test_a_proposal_is_valid_settings():
    for chars in (1, 4_000, 10**9):
        values = propose_settings(chars, "cpu").settings
        recommended_run_settings("cpu", **values).train.validated()


AMX_XEON_FLAGS = ("sse4_2", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


@pytest.mark.parametrize("cap, kept", [
    (None, AMX_XEON_FLAGS),
    ("AVX2", ("sse4_2", "avx2", "fma")),
    ("avx512_core", ("sse4_2", "avx2", "fma", "avx512f", "avx512bw")),
    ("AVX512_CORE_BF16", AMX_XEON_FLAGS[:7]),
    ("AVX512_CORE_AMX", AMX_XEON_FLAGS),
    ("ALL", AMX_XEON_FLAGS),            # not a limit: oneDNN uses everything
])
def test_a_process_held_to_a_lower_instruction_set_cannot_use_the_flags_above_it(monkeypatch, cap, kept):
    from textgen_core import devices
    monkeypatch.setattr(devices, "cpu_flags", lambda: AMX_XEON_FLAGS)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert devices.usable_cpu_flags() == kept
    assert devices.cpu_has_native_bf16() == ("avx512_bf16" in kept)
    assert defaults.cpu_has_amx() == ("amx_bf16" in kept)


def test_held_to_avx2_the_defaults_and_the_precision_are_those_of_an_avx2_cpu(monkeypatch):
    """oneDNN held to AVX2 cannot build a bf16 LSTM at all: bf16 must be neither chosen nor accepted."""
    from textgen_core import devices
    from textgen_core.errors import ConfigError
    monkeypatch.setattr(devices, "cpu_flags", lambda: AMX_XEON_FLAGS)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setattr(defaults, "physical_cores", lambda: 2)
    settings, reason = defaults_for("cpu")
    assert settings["precision"] == "fp32" and settings["cpu_threads"] == 2
    assert "held to ONEDNN_MAX_CPU_ISA=AVX2" in reason and "held below its bf16 units" in reason
    assert devices.precision_options("cpu") == ("auto", "fp32")
    with pytest.raises(ConfigError, match="held to ONEDNN_MAX_CPU_ISA=AVX2"):
        devices.resolve_precision("bf16", "cpu")


def test_physical_cores_counts_a_cores_hyperthreads_once(monkeypatch, tmp_path):
    from textgen_core import devices
    # four logical CPUs: two cores with two hyperthreads each
    for cpu, core in enumerate((0, 0, 1, 1)):
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    real_path = devices.Path
    monkeypatch.setattr(devices, "Path", lambda p: real_path(str(p).replace("/sys/devices/system/cpu", str(tmp_path))))
    monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    devices.physical_cores.cache_clear()
    try:
        assert devices.physical_cores() == 2
        monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 1})    # pinned to one core's two
        devices.physical_cores.cache_clear()
        assert devices.physical_cores() == 1
        monkeypatch.setattr(devices.os, "sched_getaffinity", lambda pid: {0, 7})    # cpu7 unreadable: count CPUs
        devices.physical_cores.cache_clear()
        assert devices.physical_cores() == 2
    finally:
        devices.physical_cores.cache_clear()
