"""The compiled batch-1 sampling loop (native_step, native/rnn_sampler.cpp) gives the eager fused step's
logits bit for bit and the ids the sampler drew before it; without a compiler or a library the
sampler falls back to the eager loop with a reason."""
from __future__ import annotations

import pytest
import torch
from test_fused_step import check_a_state_loaded_between_steps, reference_ids, rnn_model

import textgen_core as tg
from textgen_core import native_step, sampling
from textgen_core.fused_step import FusedRnnStep
from textgen_core.sampling import SamplingOptions, sample_ids


def eager_ids(monkeypatch, model, prompt, options, banned=(0,)) -> list[int]:
    with monkeypatch.context() as patch:
        patch.setattr(native_step, "available", lambda **kwargs: False)
        return [int(i) for i in sample_ids(model, prompt, options, banned_ids=banned)]


@pytest.mark.parametrize("arch", ["gru", "lstm"])
# 37 and 21: widths no vector length divides; 3 layers: a middle one; 64 and 96: the first two gates'
# sigmoids as one call
@pytest.mark.parametrize("vocab, hidden, layers, embedding", [(40, 48, 2, None), (300, 37, 3, 21), (65, 64, 1, 16),
                                                                 (65, 96, 2, 32)])
@pytest.mark.parametrize("products", ["direct", "addmm"])   # the BLAS call, or addmm where it is missing
def test_native_step_equals_the_fused_step_and_the_module_bit_for_bit(native, arch, vocab, hidden, layers,
                                                                       embedding, products):
    model = rnn_model(arch, vocab, hidden, layers, embedding)
    generator = torch.Generator().manual_seed(2)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, state = model(torch.tensor([[1, 2, 3]]))
        fused = FusedRnnStep(model)
        fused.load_state(state)
        loop = native.NativeSampler(fused, 1.0, None, None, torch.Generator())
        if products == "addmm":
            loop.loop.use_addmm()
            assert loop.loop.direct_products() == 0
        loop.load_state(state)
        for token in torch.randint(0, vocab, (200,), generator=generator).tolist():
            logits, state = model(torch.tensor([[token]]), state)
            got = loop.step_logits(token)
            assert torch.equal(got, fused.step(token))
            assert torch.equal(got, logits[:, -1, :])


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("layers", [2, 3])
def test_a_state_loaded_between_steps_is_the_one_the_next_step_starts_from(native, arch, layers):
    def compiled(fused):
        loop = native.NativeSampler(fused, 1.0, None, None, torch.Generator())
        return loop.load_state, loop.step_logits

    check_a_state_loaded_between_steps(arch, layers, compiled)


def _torch_exports_sgemm() -> bool:
    import ctypes
    from pathlib import Path

    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        return hasattr(ctypes.CDLL(str(library)), "sgemm_")
    except OSError:
        return False


@pytest.mark.parametrize("arch", ["gru", "lstm"])
def test_every_product_is_the_direct_blas_call_where_torch_exports_it(native, arch):
    if not _torch_exports_sgemm():
        pytest.skip("this torch exports no sgemm_: the products go through at::cpu::addmm_out")
    model = rnn_model(arch, hidden=96, layers=3)
    with torch.inference_mode():
        loop = native.NativeSampler(FusedRnnStep(model), 1.0, None, None, torch.Generator())
    assert loop.loop.direct_products() == 3 + 2 + 1   # each layer's hidden, layers 1-2's input, the head


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("max_bytes", [0, 3 * 4 * 4 * 48])   # no row kept; three rows, then fresh ones
def test_ids_beyond_the_first_layers_table_give_the_same_bits(native, monkeypatch, arch, max_bytes):
    from textgen_core import fused_step

    monkeypatch.setattr(fused_step, "MAX_TABLE_BYTES", max_bytes)
    model = rnn_model(arch)
    with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
        _, state = model(torch.tensor([[5]]))
        fused = FusedRnnStep(model)
        loop = native.NativeSampler(fused, 1.0, None, None, torch.Generator())
        loop.load_state(state)
        for token in [7, 8, 7, 9, 10, 11, 7, 11, 12, 8]:
            logits, state = model(torch.tensor([[token]]), state)
            assert torch.equal(loop.step_logits(token), logits[:, -1, :])


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("settings", [dict(temperature=0.8), dict(temperature=1.3, top_k=5),
                                      dict(temperature=1.0, top_p=0.9), dict(temperature=0.7, top_k=3, top_p=0.8),
                                      dict(temperature=0)])
def test_the_compiled_loop_draws_the_ids_the_sampler_drew_before(native, monkeypatch, arch, settings):
    model = rnn_model(arch)
    options = SamplingOptions(length=300, seed=7, **settings)
    ids = [int(i) for i in sample_ids(model, [1, 2, 3], options, banned_ids=(0,))]
    assert ids == reference_ids(model, [1, 2, 3], options, (0,))
    assert ids == eager_ids(monkeypatch, model, [1, 2, 3], options)
    assert 0 not in ids


@pytest.mark.parametrize("length", [0, 1, native_step.CHUNK - 1, native_step.CHUNK, native_step.CHUNK + 1,
                                    3 * native_step.CHUNK + 5])
def test_every_length_across_chunk_edges_gives_the_same_ids(native, monkeypatch, length):
    model = rnn_model("lstm")
    options = SamplingOptions(length=length, seed=3)
    ids = [int(i) for i in sample_ids(model, [4, 5], options, banned_ids=(0,))]
    assert len(ids) == length
    assert ids == eager_ids(monkeypatch, model, [4, 5], options)


def test_a_bundled_model_writes_the_same_text_with_and_without_the_compiled_loop(native, monkeypatch):
    bundle = tg.load("shakespeare-char-lstm")
    calls = []
    real = sampling._sample_native
    monkeypatch.setattr(sampling, "_sample_native", lambda *args: calls.append(1) or real(*args))
    text = tg.generate(bundle, "ROMEO:", length=300, seed=4)[0]
    assert calls, "the compiled loop was not used"
    monkeypatch.setattr(native_step, "available", lambda **kwargs: False)
    assert tg.generate(bundle, "ROMEO:", length=300, seed=4)[0] == text


def test_the_switch_turns_the_compiled_loop_off(monkeypatch):
    monkeypatch.setenv(native_step.SWITCH_ENV, "0")
    assert not native_step.available()
    monkeypatch.setattr(sampling, "_sample_native", lambda *args: pytest.fail("the compiled loop ran"))
    assert len(list(sample_ids(rnn_model("gru"), [1, 2], SamplingOptions(length=40, seed=1)))) == 40


def test_without_a_compiler_the_build_says_so_and_sampling_uses_the_eager_loop(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv(native_step.DIR_ENV, str(tmp_path / "native"))
    assert native_step.compiler() is None and native_step.library_path() is None
    with pytest.raises(RuntimeError, match="no C.. compiler found"):
        native_step.build()
    assert native_step._main([]) == 1 and native_step._main(["--optional"]) == 0


def test_a_failed_build_reports_the_compiler_and_leaves_no_library(monkeypatch, tmp_path):
    failing = tmp_path / "bin" / "c++"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'cc1plus: fatal error: out of memory' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CXX", str(failing))
    monkeypatch.setenv(native_step.DIR_ENV, str(tmp_path / "native"))
    with pytest.raises(RuntimeError, match="the C.. build failed: cc1plus: fatal error: out of memory"):
        native_step.build()
    assert [p.name for p in (tmp_path / "native").iterdir()] == ["build.lock"]   # no half-written library


def test_the_library_is_named_by_its_source_torch_and_compiler(native, monkeypatch, tmp_path):
    path = native_step.library_path()
    assert path.exists() and path.parent == native_step.build_dir()
    monkeypatch.setattr(native_step, "_source_bytes", lambda: b"// another source")
    assert native_step.library_path() != path


def test_a_damaged_library_is_refused_with_a_reason(tmp_path):
    damaged = tmp_path / "rnn_sampler-damaged.so"
    damaged.write_bytes(b"not a shared library")
    assert native_step._load(damaged) is False
    assert "did not load" in native_step.reason()


def test_a_folder_that_cannot_be_written_is_named(monkeypatch, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder would be")
    monkeypatch.setenv(native_step.DIR_ENV, str(blocked / "native"))
    if native_step.compiler() is None:
        pytest.skip("no C++ compiler on this machine")
    with pytest.raises(RuntimeError, match=f"cannot write the compiled loop into {blocked / 'native'}"):
        native_step.build()


@pytest.mark.parametrize("compiled, num_samples", [(True, 1), (False, 1), (False, 3)])
def test_the_chunks_hold_sample_ids_ids_in_order(native, monkeypatch, compiled, num_samples):
    model = rnn_model("gru")
    options = SamplingOptions(length=2 * native_step.CHUNK + 3, seed=5, num_samples=num_samples)
    if not compiled:
        monkeypatch.setattr(native_step, "available", lambda **kwargs: False)
    chunks = list(sampling.sample_id_chunks(model, [1, 2], options, banned_ids=(0,)))
    ids = [row.tolist() for row in sample_ids(model, [1, 2], options, banned_ids=(0,))]
    assert torch.cat(chunks).tolist() == ids
    assert len(ids) == options.length and all(len(row) == num_samples for row in ids)
    # the compiled loop's calls arrive whole; the eager loops' steps one by one
    expected = [native_step.CHUNK, native_step.CHUNK, 3] if compiled else [1] * options.length
    assert [len(chunk) for chunk in chunks] == expected


@pytest.mark.parametrize("arch", ["gru", "lstm"])
@pytest.mark.parametrize("temperature", [0.37, 1.9])
def test_a_long_draw_at_odd_temperatures_gives_the_eager_ids(native, monkeypatch, arch, temperature):
    # the loop's own divisions and argmax against ATen's, over thousands of draws
    model = rnn_model(arch)
    options = SamplingOptions(length=2000, seed=11, temperature=temperature)
    ids = [int(i) for i in sample_ids(model, [1, 2, 3], options, banned_ids=(0,))]
    assert ids == eager_ids(monkeypatch, model, [1, 2, 3], options)


def test_greedy_ties_go_to_the_first_id_as_atens_argmax(native, monkeypatch):
    model = rnn_model("lstm")
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-1.0)
        model.head.bias[[5, 9]] = 2.0   # equal logits: the first of them wins
    options = SamplingOptions(length=40, seed=1, temperature=0)
    ids = [int(i) for i in sample_ids(model, [1], options, banned_ids=(0,))]
    assert ids == [5] * 40 == eager_ids(monkeypatch, model, [1], options)


def test_the_loops_division_softmax_and_argmax_are_atens_bit_for_bit(native):
    model = rnn_model("gru", vocab=300)
    generator, values = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    with torch.inference_mode():
        loop = native.NativeSampler(FusedRnnStep(model), 1.0, None, None, generator).loop
        for trial in range(100):
            logits = torch.randn(1, 300, generator=values) * 10 ** (trial % 4)
            temperature = [0.37, 0.8, 1.9, 7.77][trial % 4]
            state = generator.get_state()
            drawn, scaled, probs, quotients = loop.draw_parts(logits, temperature, generator)
            assert torch.equal(scaled, torch.div(logits, temperature))
            assert torch.equal(probs, torch.softmax(scaled, -1))
            noise = torch.empty_like(probs).exponential_(generator=torch.Generator().set_state(state))
            assert torch.equal(quotients, probs / noise)
            assert int(drawn) == int((probs / noise).argmax(-1))
