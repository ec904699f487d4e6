"""oneDNN's switch is process-wide: samplers in several threads (sessions of one app server) turn it
off around their steps, and it must be back on once all of them are done, whatever the overlap."""
from __future__ import annotations

import threading

import torch

from textgen_core import ModelConfig, build_model
from textgen_core.devices import onednn_off
from textgen_core.sampling import SamplingOptions, sample_ids


def test_overlapping_blocks_in_several_threads_leave_onednn_as_it_was():
    assert torch.backends.mkldnn.enabled
    start = threading.Barrier(4)

    def toggle():
        start.wait()
        for _ in range(2_000):
            with onednn_off():
                assert not torch.backends.mkldnn.enabled
    threads = [threading.Thread(target=toggle) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert torch.backends.mkldnn.enabled


def test_samplers_in_several_threads_leave_onednn_on():
    """Batches of 2 run the module's LSTM step by step with oneDNN off around each step."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("lstm", "tiny", 30, hidden=32)).eval()
    assert torch.backends.mkldnn.enabled
    errors: list[BaseException] = []

    def sample(seed: int):
        try:
            for _ in range(5):
                list(sample_ids(model, [1, 2, 3], SamplingOptions(length=200, num_samples=2, seed=seed)))
        except BaseException as error:   # noqa: BLE001 - reported by the assertion below
            errors.append(error)
    threads = [threading.Thread(target=sample, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert torch.backends.mkldnn.enabled
