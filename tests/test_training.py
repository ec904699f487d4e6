"""Trainer behaviour: event order, budgets, early stopping, divergence, stop, resume, seeds."""
from __future__ import annotations

import math
import threading

import pytest
import torch

from textgen_core import ConfigError, ModelConfig, TrainConfig, Trainer, build_model, training
from textgen_core.data import StreamWindows, TokenSplit, split_ids, to_id_tensor
from textgen_core.tokenizers import CharTokenizer


def char_split(text: str, val_fraction: float = 0.2, seq_len: int = 16):
    tokenizer = CharTokenizer().fit(text)
    ids = to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size)
    return tokenizer, split_ids(ids, val_fraction, seq_len)


def make_trainer(split: TokenSplit, vocab: int, events=None, arch="gru", **overrides) -> Trainer:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(arch, "tiny", vocab, hidden=32, embedding=16))
    settings = dict(batch_size=8, seq_len=16, lr=1e-2, max_steps=30, eval_every=10, log_every=5,
                    device="cpu", seed=3)
    settings.update(overrides)
    callbacks = (events.append,) if events is not None else ()
    checkpoint_dir = settings.pop("checkpoint_dir", None)
    return Trainer(model, split, TrainConfig(**settings), callbacks=callbacks, checkpoint_dir=checkpoint_dir)


def test_events_arrive_in_order_with_validation(small_text):
    tokenizer, split = char_split(small_text)
    events = []
    history = make_trainer(split, tokenizer.vocab_size, events).fit()
    kinds = [e.kind for e in events]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    steps = [e.step for e in events if e.kind != "end"]
    assert steps == sorted(steps)
    evals = [e for e in events if e.kind == "eval"]
    assert [e.step for e in evals] == [10, 20, 30]
    for e in evals:
        assert math.isclose(e.val_bpc, e.val_loss / math.log(2))  # char level: one char per token
        assert e.tokens_per_s > 0 and e.lr > 0
    assert evals[-1].val_loss < math.log(tokenizer.vocab_size)  # learned something
    assert history.end.reason == "max_steps" and history.end.best_step is not None
    assert [p["step"] for p in history.evals] == [10, 20, 30]


def test_same_seed_same_run(small_text):
    tokenizer, split = char_split(small_text)
    first = make_trainer(split, tokenizer.vocab_size).fit()
    second = make_trainer(split, tokenizer.vocab_size).fit()
    assert [p["val_loss"] for p in first.evals] == [p["val_loss"] for p in second.evals]
    third = make_trainer(split, tokenizer.vocab_size, seed=4).fit()
    assert [p["val_loss"] for p in first.evals] != [p["val_loss"] for p in third.evals]


def test_epoch_and_time_budgets(small_text):
    tokenizer, split = char_split(small_text)
    trainer = make_trainer(split, tokenizer.vocab_size, max_steps=None, epochs=0.5)
    history = trainer.fit()
    assert history.end.reason == "epochs"
    assert history.end.step == math.ceil(0.5 * len(split.train) / (8 * 16))
    history = make_trainer(split, tokenizer.vocab_size, max_steps=None, max_minutes=0.01).fit()
    assert history.end.reason == "time" and history.end.elapsed >= 0.6


def test_stop_event_ends_cleanly_between_steps(small_text):
    tokenizer, split = char_split(small_text)
    stop = threading.Event()
    events = []
    trainer = make_trainer(split, tokenizer.vocab_size, events, max_steps=1000)
    trainer.callbacks.append(lambda e: stop.set() if e.kind == "train" and e.step == 15 else None)
    history = trainer.fit(stop)
    assert history.end.reason == "stopped" and history.end.step == 15
    assert history.evals[-1]["step"] == 15  # a final evaluation, so the best weights are known


def test_losses_read_late_give_the_same_run(small_text, monkeypatch):
    """On a GPU a window's loss is read once it has reached the host, while training goes on.
    Windows that never say they have landed (as on a busy GPU) are read one window late, and before
    every evaluation: the same events, values and order as reading each at once."""
    tokenizer, split = char_split(small_text)
    at_once = []
    make_trainer(split, tokenizer.vocab_size, at_once, max_steps=33).fit()
    monkeypatch.setattr(training.ClosedWindow, "ready", lambda self: False)
    late, seen_at = [], {}
    trainer = make_trainer(split, tokenizer.vocab_size, late, max_steps=33)
    trainer.callbacks.append(lambda e: seen_at.setdefault((e.kind, e.step), trainer.step))
    trainer.fit()

    def strip(events):
        return [{k: v for k, v in vars(e).items() if k not in ("elapsed", "tokens_per_s")} for e in events]
    assert strip(late) == strip(at_once)
    assert [e.step for e in late if e.kind == "train"] == [5, 10, 15, 20, 25, 30]
    # 5 is read when 10 closes (10 itself at once: an evaluation follows); 25 when 30 closes
    assert seen_at[("train", 5)] == 10 and seen_at[("train", 15)] == 20 and seen_at[("train", 25)] == 30
    assert seen_at[("train", 10)] == 10 and seen_at[("eval", 30)] == 30


def test_a_diverged_window_read_late_still_stops_the_run(small_text, monkeypatch):
    monkeypatch.setattr(training.ClosedWindow, "ready", lambda self: False)
    tokenizer, split = char_split(small_text)
    trainer = make_trainer(split, tokenizer.vocab_size, max_steps=100)
    trainer.callbacks.append(lambda e: torch.nn.init.constant_(next(trainer.model.parameters()), math.nan)
                             if e.kind == "eval" and e.step == 10 else None)
    history = trainer.fit()
    assert history.end.reason == "diverged" and history.end.best_step == 10
    assert history.end.step == 20    # the window 11-15 was read when 16-20 closed


def test_early_stopping_when_validation_turns_up():
    # Training text teaches "aab" patterns; the validation text follows the opposite rule,
    # so validation loss rises while training loss falls.
    text = "aab" * 400 + "bba" * 100
    tokenizer, split = char_split(text, val_fraction=0.2)
    history = make_trainer(split, tokenizer.vocab_size, max_steps=500, eval_every=5, patience=2).fit()
    assert history.end.reason == "early_stopping"
    assert history.end.step < 500
    assert "did not improve in 2 evaluations" in history.end.message
    best = min(p["val_loss"] for p in history.evals)
    assert history.end.best_val_loss == best


def test_divergence_stops_and_keeps_best_weights(small_text):
    tokenizer, split = char_split(small_text)
    trainer = make_trainer(split, tokenizer.vocab_size, max_steps=100)

    def corrupt_after_first_eval(event):
        if event.kind == "eval" and event.step == 10:
            with torch.no_grad():
                next(trainer.model.parameters()).fill_(float("nan"))

    trainer.callbacks.append(corrupt_after_first_eval)
    history = trainer.fit()
    assert history.end.reason == "diverged"
    assert "Lower the learning rate" in history.end.message and history.end.best_step == 10
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.parametrize("arch, carry_state", [("gru", False), ("gru", True), ("lstm", True), ("attention", True)])
def test_resume_continues_the_same_run(small_text, tmp_path, arch, carry_state):
    """Stopped at step 20 and resumed to 40 gives the same result as 40 steps in one go (with the state
    carried: the same place in the streams, and the state the first part ended with)."""
    tokenizer, split = char_split(small_text)
    settings = dict(arch=arch, max_steps=40, carry_state=carry_state)
    straight = make_trainer(split, tokenizer.vocab_size, **settings).fit()

    stop = threading.Event()
    first = make_trainer(split, tokenizer.vocab_size, checkpoint_dir=tmp_path, **settings)
    first.callbacks.append(lambda e: stop.set() if e.kind == "eval" and e.step == 20 else None)
    assert first.fit(stop).end.step == 20

    second = make_trainer(split, tokenizer.vocab_size, checkpoint_dir=tmp_path, **settings)
    second.resume(tmp_path)
    assert second.step == 20
    history = second.fit()
    assert history.end.step == 40
    assert [p["step"] for p in history.evals] == [10, 20, 30, 40]
    torch.testing.assert_close(history.evals[-1]["val_loss"], straight.evals[-1]["val_loss"])


def test_stream_windows_read_each_row_on_through_its_own_part_of_the_text():
    ids = torch.arange(200)   # each id is its own position
    streams = StreamWindows(ids, batch=4, seq_len=8, generator=torch.Generator().manual_seed(0))
    assert streams.stream_len == 50
    starts = torch.arange(4)[:, None] * 50                  # (B, 1) where each row's part begins
    previous, passes = None, 0
    for _ in range(20):
        inputs, targets, new_pass = streams.next()
        assert inputs.shape == (4, 8) and torch.equal(targets, inputs + 1)
        assert (inputs >= starts).all() and (targets < starts + 50).all()   # never into the next row's part
        if new_pass:
            passes += 1
            assert 0 <= int(inputs[0, 0]) < 8 and torch.equal(inputs[:, :1], starts + inputs[0, 0])
        else:
            assert torch.equal(inputs[:, 0], previous[:, -1] + 1)   # on from where the last window ended
        previous = inputs
    assert passes == 4   # five or six windows of 8 fit in each pass over 50 ids, so 20 make 4 passes
    # on two ranks each keeps its half of the rows of the same batches
    first, second = (StreamWindows(ids, 4, 8, torch.Generator().manual_seed(0), part=(rank, 2)) for rank in (0, 1))
    whole = StreamWindows(ids, 4, 8, torch.Generator().manual_seed(0))
    for _ in range(7):
        assert torch.equal(torch.cat([first.next()[0], second.next()[0]]), whole.next()[0])


def test_a_text_too_short_for_a_stream_per_row_is_refused():
    with pytest.raises(ConfigError, match="4 streams of at least 9 tokens need 36; use a smaller batch size"):
        StreamWindows(torch.arange(35), batch=4, seq_len=8, generator=torch.Generator())


@pytest.mark.parametrize("carry_state", [False, True])
def test_each_step_starts_from_the_state_the_last_one_ended_with(small_text, carry_state):
    """With the state carried the model reads each window from the detached state of the window before
    (from no context only where a pass over the streams begins); with random windows, always from none."""
    tokenizer, split = char_split(small_text)
    trainer = make_trainer(split, tokenizer.vocab_size, carry_state=carry_state, max_steps=30)
    calls = []   # (the state given, the state returned) of each training forward
    forward = trainer.model.forward

    def recording(ids, state=None):
        logits, new_state = forward(ids, state)
        if trainer.model.training:
            calls.append((state, new_state))
        return logits, new_state

    trainer.model.forward = recording
    trainer.fit()
    assert len(calls) == 30
    given = [state for state, _ in calls]
    if not carry_state:
        assert all(state is None for state in given)
        return
    stream_len = len(split.train) // 8
    most, fewest = (stream_len - 1) // 16, (stream_len - 16) // 16    # windows in a pass (offset 0 or 15)
    assert given[0] is None and math.ceil(30 / most) <= given.count(None) <= math.ceil(30 / fewest)
    for (state, _), (_, before) in zip(calls[1:], calls):
        if state is not None:
            assert not state.requires_grad and torch.equal(state, before)


@pytest.mark.parametrize("bad, message", [
    (dict(lr=0), "lr must be above 0"),
    (dict(batch_size=0), "batch size must be"),
    (dict(max_steps=0), "max steps must be at least 1"),
    (dict(patience=0), "patience must be at least 1"),
    (dict(device="tpu"), "device must be"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**bad).validated()


def test_too_short_for_a_window_is_refused():
    with pytest.raises(Exception, match="too few for windows"):
        split_ids(torch.arange(20), 0.1, seq_len=64)


def test_out_of_memory_stops_with_advice_and_keeps_best(small_text, monkeypatch):
    tokenizer, split = char_split(small_text)
    trainer = make_trainer(split, tokenizer.vocab_size, max_steps=100)
    real_step = trainer._train_step

    def step_then_oom():
        if trainer.step >= 12:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_step()

    monkeypatch.setattr(trainer, "_train_step", step_then_oom)
    history = trainer.fit()
    assert history.end.reason == "out_of_memory" and history.end.step == 12
    assert "Lower the batch size" in history.end.message and history.end.best_step == 10


def test_absurd_learning_rate_is_caught_as_divergence():
    text = open(__file__).read()[:6000]  # real, varied text
    tokenizer, split = char_split(text)
    history = make_trainer(split, tokenizer.vocab_size, lr=10.0, grad_clip=0.0, max_steps=200,
                           eval_every=5, log_every=5).fit()
    assert history.end.reason == "diverged", history.end.message
    assert "Lower the learning rate (now 10)" in history.end.message


def test_cpu_threads_apply_to_the_run_only(small_text):
    from textgen_core import RunSettings, read_text, train_model
    seen = []
    before = torch.get_num_threads()
    settings = RunSettings(arch="gru", preset="tiny", train=TrainConfig(
        batch_size=4, seq_len=16, max_steps=4, eval_every=2, log_every=1, cpu_threads=1, device="cpu"))
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        train_model(read_text(small_text.encode(), "t.txt"), settings, folder,
                    callbacks=(lambda e: seen.append(torch.get_num_threads()),))
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_cpu_threads_are_checked():
    with pytest.raises(ConfigError, match="cpu threads must be a whole number"):
        TrainConfig(cpu_threads=0).validated()


def test_a_finished_run_frees_the_gru_loops_kept_buffers(small_text, native):
    """The compiled GRU keeps its large buffers from step to step (1 MB and up: a 512-wide GRU at batch
    16 x 48 here, a held buffer fails the last line); once fit returns, none is left held."""
    from textgen_core import gru_layer
    tokenizer, split = char_split(small_text * 20, seq_len=48)
    model = build_model(ModelConfig.from_preset("gru", "tiny", tokenizer.vocab_size, hidden=512, embedding=16))
    config = TrainConfig(batch_size=16, seq_len=48, max_steps=3, eval_every=3, log_every=1, device="cpu", seed=3)
    gru_layer.release_buffers()
    Trainer(model, split, config).fit()
    assert gru_layer.release_buffers() == 0
