"""The model card (README.md with Hub metadata) written into every model folder."""
from __future__ import annotations

import platform
from typing import Optional

import torch


def hardware_name(device: torch.device, threads: Optional[int] = None) -> str:
    """The GPU's name, or the CPU with the threads the run trained on (``threads``; None: torch's
    setting now, which is not the run's when it set its own count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = threads or torch.get_num_threads()
    return f"CPU ({platform.machine()}, {threads} thread{'s' if threads != 1 else ''})"


def _fmt(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def render_card(info: dict, samples: list[str]) -> str:
    """Markdown with YAML front matter; ``info`` is the run.json dict."""
    model, train, corpus = info["model"], info["train_config"], info["corpus"]
    tags = ["text-generation", "textgen-core", model["arch"], f"{info['tokenizer']['type']}-level"]
    front = "\n".join(["---", "library_name: textgen_core", "pipeline_tag: text-generation",
                       "tags:", *[f"- {t}" for t in tags], "---", ""])
    sample_text = "\n\n".join(f"```text\n{s}\n```" for s in samples) or "_none_"
    command = f"```bash\n{info['command']}\n```\n\n" if info.get("command") else ""
    return f"""{front}
# {info['name']}

A {model['arch'].upper()} language model trained with `textgen_core` on **{corpus['name']}**
({corpus['chars']:,} characters), {info['tokenizer']['type']} tokenizer
({info['tokenizer']['vocab_size']:,} tokens).

| | |
|---|---|
| architecture | {model['arch']}: embedding {model['embedding']}, hidden {model['hidden']}, layers {model['layers']}, dropout {model['dropout']} |
| parameters | {info['parameters']:,} |
| training | {info['steps']} steps, batch {train['batch_size']} x {train['seq_len']} tokens, lr {train['lr']:g}, {info.get('precision', train.get('precision', 'fp32'))} |
| stopped because | {info['stop_message']} |
| best validation loss | {_fmt(info['best_val_loss'], '.4f')} nats/token at step {info['best_step']} |
| best validation bits per char | {_fmt(info['best_val_bpc'], '.4f')} |
| validation split | last {info['val_fraction']:.0%} of the text |
| hardware | {info['hardware']} |
| training time | {info['elapsed_s']:.1f} s |

{command}## Use

```python
import textgen_core as tg
bundle = tg.load("path/to/this/folder")
print(tg.generate(bundle, prompt="", length=200, temperature=0.8, seed=1)[0])
```

## Samples (temperature 0.8)

{sample_text}
"""
