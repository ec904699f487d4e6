"""python -m textgen_core train | sample | evaluate | surprisal | push | pretrained | recipe

Bad input or settings end with status 2 and one ``error: ...`` line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, cast

from tqdm import tqdm

from . import __version__, api, cli_runs, hub, pretrained, recipes
from .corpus import read_file
from .corpus_file import open_file
from .defaults import defaults_for
from .distributed import Distributed, FailedElsewhere
from .errors import ConfigError, TextgenError
from .models import ARCHITECTURES, PRESETS
from .runs import PreparedRun, RunSettings, execute, interrupts_stop, prepare_run, settings_for_resume
from .tokenizers import TOKENIZER_KINDS
from .training import EvalResult, TrainConfig, TrainingEnded, TrainProgress


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m textgen_core",
                                     description="Train, sample and evaluate text-generation models.")
    parser.add_argument("--version", action="version", version=f"textgen_core {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model on a text file")
    train.add_argument("corpus", help="a plain-text file (any common encoding)")
    train.add_argument("--out", required=True, help="model folder to write (or resume)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the model in --out, or write beside files this project did not write "
                            "(files of the model's names are replaced; nothing else is deleted)")
    # The run's identity (None: not given): a resume takes the saved values and refuses changed ones.
    train.add_argument("--tokenizer", choices=TOKENIZER_KINDS, help="char (default), word or sentencepiece")
    train.add_argument("--vocab-size", type=int, help="word-vocabulary cap or SentencePiece size")
    train.add_argument("--model", choices=ARCHITECTURES, help="gru (default), lstm, cnn or attention")
    train.add_argument("--preset", choices=PRESETS, help="model size (default small)")
    for name in ("embedding", "hidden", "layers", "context"):
        train.add_argument(f"--{name}", type=int, help=f"override the preset's {name}")
    train.add_argument("--dropout", type=float, help="override the preset's dropout")
    defaults = TrainConfig()   # None below: not given (the default, or with --recommended the device's)
    train.add_argument("--recommended", action="store_true",
                       help="start from the settings measured best for this device (the note printed says "
                            "which and why); the flags given win")
    train.add_argument("--seq-len", type=int, help=f"tokens per training window (default {defaults.seq_len})")
    train.add_argument("--batch-size", type=int, help=f"windows per step (default {defaults.batch_size})")
    train.add_argument("--carry-state", action=argparse.BooleanOptionalAction,
                       help="each batch row reads on through its own part of the text, the model's state "
                            "carried from one step to the next (as char-rnn does), so training sees the long "
                            "context that sampling gives; --no-carry-state: random windows, each from no context "
                            f"(default: {'on' if defaults.carry_state else 'off'})")
    train.add_argument("--lr", type=float, help=f"peak learning rate (default {defaults.lr:g})")
    train.add_argument("--weight-decay", type=float, help=f"AdamW weight decay (default {defaults.weight_decay:g})")
    train.add_argument("--max-steps", type=int)
    train.add_argument("--epochs", type=float)
    train.add_argument("--max-minutes", type=float)
    train.add_argument("--eval-every", type=int, help=f"steps between evaluations (default {defaults.eval_every})")
    train.add_argument("--val-fraction", type=float, help="last share of the text held out for validation "
                       "(default 0.1)")
    train.add_argument("--patience", type=int, help="evaluations without improvement before stopping")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                       help="auto (default): bf16 autocast on CUDA, fp32 on the CPU; bf16 is faster on CPUs "
                            "with bf16 units")
    train.add_argument("--cpu-threads", type=int, help="torch threads on the CPU (default: torch's; 1 is often "
                       "faster for these small models, see BENCHMARKS.md)")
    train.add_argument("--seed", type=int, help=f"seed of the weights and the batches (default {defaults.seed})")
    train.add_argument("--resume", action="store_true", help="continue the run saved in --out")

    sample = commands.add_parser("sample", help="generate text from a model folder or Hub repo id")
    sample.add_argument("model", help="model folder, pretrained name or Hub repo id (owner/name)")
    sample.add_argument("--prompt", default="")
    sample.add_argument("--length", type=int, default=200, help="tokens to generate per sample")
    sample.add_argument("--temperature", type=float, nargs="+", default=[0.8],
                        help="one or more temperatures (0 = greedy)")
    sample.add_argument("--top-k", type=int)
    sample.add_argument("--top-p", type=float)
    sample.add_argument("--num-samples", type=int, default=1)
    sample.add_argument("--seed", type=int, default=None, help="same seed, same text")

    evaluate = commands.add_parser("evaluate", help="loss and bits per char of a model on a text file")
    evaluate.add_argument("model", help="model folder, pretrained name or Hub repo id (owner/name)")
    evaluate.add_argument("textfile")

    surprise = commands.add_parser("surprisal", help="how surprised a model is by each token of a text file, "
                                                     "as an HTML heat map")
    surprise.add_argument("model", help="model folder, pretrained name or Hub repo id (owner/name)")
    surprise.add_argument("textfile")
    surprise.add_argument("--html", help="write a self-contained HTML heat map here (hover a token for the "
                                         "model's top predictions)")
    surprise.add_argument("--top-k", type=int, default=5, help="predictions shown per token")

    push = commands.add_parser("push", help="upload a model folder to the Hugging Face Hub")
    push.add_argument("model", help="model folder")
    push.add_argument("--repo", required=True, help="Hub repo id, owner/name")
    push.add_argument("--private", action="store_true")

    commands.add_parser("pretrained", help="list the pretrained models")
    export = commands.add_parser("export", help="write a model's network as an ONNX file (the [export] extra)")
    export.add_argument("model", help="model folder, pretrained name or Hub repo id (owner/name)")
    export.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write: the step "
                        "function (ids, state) -> (logits, state) of a GRU or LSTM, the full-sequence forward "
                        "of a CNN or attention model")
    cli_runs.add_parser(commands)

    recipe = commands.add_parser("recipe", help="run a classic experiment (see --list)")
    recipe.add_argument("name", nargs="?", help="recipe name")
    recipe.add_argument("--list", action="store_true", help="list the recipes")
    recipe.add_argument("--runs", help="comma-separated run labels (default: all of the recipe's runs)")
    recipe.add_argument("--out", default="runs/recipes", help="folder for the model folders")
    recipe.add_argument("--max-minutes", type=float, help="cap each run's training time")
    recipe.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser


class _Progress:
    """tqdm bar fed by trainer events; evaluations are printed as lines above it."""

    def __init__(self, total: Optional[int], initial: int = 0) -> None:
        self.total, self.initial, self.val = total, initial, ""
        self.bar: Optional[tqdm] = None

    def __call__(self, event) -> None:
        if self.bar is None:  # created on the first event, so early errors print alone
            self.bar = tqdm(total=self.total, initial=self.initial, unit="step", dynamic_ncols=True,
                            file=sys.stderr)
        if isinstance(event, TrainProgress):
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix_str(f"loss {event.train_loss:.3f}{self.val} {event.tokens_per_s:,.0f} tok/s")
        elif isinstance(event, EvalResult):
            mark = " *best*" if event.is_best else ""
            self.val = f" val {event.val_loss:.3f}"
            tqdm.write(f"step {event.step:>6}  train {event.train_loss:.4f}  val {event.val_loss:.4f} "
                       f"({event.val_bpc:.3f} bits/char){mark}", file=sys.stderr)
        elif isinstance(event, TrainingEnded):
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe_run(run: PreparedRun) -> str:
    trainer, cfg = run.trainer, run.model.config
    return ("".join(f"note: {note}\n" for note in run.notes)
            + f"{cfg.arch} model, {run.model.num_parameters():,} parameters; {run.tokenizer.kind} tokenizer, "
            f"{run.tokenizer.vocab_size:,} tokens; {len(trainer.train_ids):,} training and "
            f"{len(trainer.val_ids):,} validation tokens; device {trainer.device}"
            + (f"; {trainer.dist.world} processes ({trainer.dist.backend}), {trainer.local_batch} windows "
               f"each of every batch of {trainer.config.batch_size}" if trainer.dist.active else "")
            + (f"; resuming at step {trainer.step}" if trainer.step else "")
            + "".join(f"\nnote: {note}" for note in run.tokenizer.notes))


def run_train(args: argparse.Namespace) -> int:
    corpus = open_file(args.corpus)   # a large file is read in pieces and tokenized into a cached file
    train_values = dict(batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
                        weight_decay=args.weight_decay, max_steps=args.max_steps, epochs=args.epochs,
                        max_minutes=args.max_minutes, eval_every=args.eval_every, patience=args.patience,
                        precision=args.precision, cpu_threads=args.cpu_threads, seed=args.seed,
                        carry_state=args.carry_state)
    given = dict(tokenizer=args.tokenizer, vocab_size=args.vocab_size, arch=args.model, preset=args.preset,
                 embedding=args.embedding, hidden=args.hidden, layers=args.layers, dropout=args.dropout,
                 context=args.context, val_fraction=args.val_fraction)
    if args.recommended:
        if args.resume:
            raise ConfigError("--recommended chooses a new run's settings; a resume keeps the saved ones "
                              "(leave out --recommended)")
        recommended, why = defaults_for(args.device)
        print(f"note: {why}", file=sys.stderr)
        if any(train_values[k] is not None for k in ("max_steps", "epochs", "max_minutes")):
            recommended.pop("max_minutes", None)   # the budget given replaces the recommended one
        for key, value in recommended.items():
            for values in (given, train_values):
                if key in values and values[key] is None:
                    values[key] = value
    train_config = TrainConfig(**{k: v for k, v in train_values.items() if v is not None},
                               device=args.device).validated()
    if args.resume:  # what was not given comes from the saved run; what was given must match it
        settings = settings_for_resume(args.out, **given, train=train_config)
    else:
        settings = RunSettings(**{k: v for k, v in given.items() if v is not None}, train=train_config)
    dist = Distributed.from_env(args.device)   # several processes under torchrun, else one
    try:
        run = prepare_run(corpus, settings, args.out, resume=args.resume, overwrite=args.overwrite,
                          command=recorded_command(args.argv), dist=dist)
        try:
            return _train_prepared(run, args.out) if dist.is_main else _train_follower(run)
        finally:
            run.release()
    finally:
        dist.close()


def _train_follower(run: PreparedRun) -> int:
    """A rank other than 0: trains its share quietly; rank 0 evaluates, writes and prints."""
    stop = threading.Event()
    with interrupts_stop(stop):
        end = run.trainer.fit(stop).end
    assert end is not None   # fit always ends with its TrainingEnded
    if end.reason == "out_of_memory":   # its own failure: say it here too, rank 0 reports it as well
        print(f"error (rank {run.trainer.dist.rank}): {end.message}", file=sys.stderr)
        return 2
    return 2 if end.reason == "peer_failed" else 0


def _train_prepared(run: PreparedRun, out: str) -> int:
    print(describe_run(run), file=sys.stderr)
    progress = _Progress(run.trainer.total_steps, initial=run.trainer.step)
    run.trainer.callbacks.append(progress)
    stop = threading.Event()
    # First Ctrl-C, SIGTERM or SIGHUP: finish the current step, keep the best weights, write the
    # folder, exit 130. A second one stops at once (the best weights are on disk already).
    with interrupts_stop(stop, on_first=lambda signum: tqdm.write(
            f"{signal.Signals(signum).name}: stopping after this step and saving the best weights "
            "(once more to stop at once)", file=sys.stderr)) as interrupts:
        try:
            result = execute(run, stop, interrupts)
        finally:
            progress.close()  # an error then prints on a line of its own
    end = result.history.end
    assert end is not None   # execute returns a finished run
    print(end.message)
    print(f"saved to {out} ({result.bundle.model.num_parameters():,} parameters)")
    if end.reason == "peer_failed":
        print(f"error: {end.message}", file=sys.stderr)
        return 2
    return 130 if interrupts.received else 0


def recorded_command(argv: Sequence[str]) -> str:
    """The command for the model card, with every absolute path cut to its last part: a card goes
    to the Hub and must not carry the trainer's local folders."""
    def local(arg: str) -> str:
        if "=" in arg and arg.startswith("--"):
            name, value = arg.split("=", 1)
            return f"{name}={local(value)}"
        return Path(arg).name if os.path.isabs(arg) else arg
    return "python -m textgen_core " + shlex.join(local(arg) for arg in argv)


def load_model(source: str) -> hub.Bundle:
    """A folder, a pretrained name (Hub first, bundled copy as fallback) or a Hub repo id, as
    ``pretrained.resolve`` finds it; which copy was loaded goes to stderr."""
    bundle, note = pretrained.resolve(source)
    print(note, file=sys.stderr)
    return bundle


def run_sample(args: argparse.Namespace) -> int:
    bundle = load_model(args.model)
    labelled = len(args.temperature) > 1 or args.num_samples > 1
    for temperature in args.temperature:
        if not labelled:  # one sample: print it as it is generated
            for piece in api.stream(bundle, args.prompt, args.length, temperature, args.top_k,
                                    args.top_p, args.seed):
                print(piece, end="", flush=True)
            print()
            continue
        texts = api.generate(bundle, args.prompt, args.length, temperature, args.top_k, args.top_p,
                             args.num_samples, args.seed)
        for index, text in enumerate(texts, 1):
            print(f"=== temperature {temperature:g}, sample {index} ===")
            print(text)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    bundle = load_model(args.model)
    scores = api.evaluate(bundle, read_file(args.textfile, min_chars=2).text)
    nats_per_char = scores["bpc"] * math.log(2)
    print(f"loss {scores['loss']:.4f} nats/token  {nats_per_char:.4f} nats/char  {scores['bpc']:.4f} bits/char  "
          f"({scores['tokens']:,} tokens, {scores['chars']:,} characters)")
    return 0


def run_surprisal(args: argparse.Namespace) -> int:
    from .errors import ConfigError
    from .files import atomic_write_text
    from .inspection import surprisal
    from .inspection.html import surprisal_document

    if args.html and not Path(args.html).resolve().parent.is_dir():
        raise ConfigError(f"the folder of {args.html} does not exist; create it or write the heat map elsewhere")
    bundle = load_model(args.model)
    result = surprisal(bundle, read_file(args.textfile, min_chars=2).text, args.top_k)
    if args.html:
        atomic_write_text(Path(args.html), surprisal_document(result, Path(args.textfile).name))
    print(f"{result.bits_per_char:.4f} bits/char  ({result.total_bits:,.1f} bits over {result.predicted_chars:,} "
          f"characters, {len(result):,} tokens)" + (f"; heat map in {args.html}" if args.html else ""))
    return 0


def run_push(args: argparse.Namespace) -> int:
    # The token comes from HF_TOKEN or the Hub login inside huggingface_hub; it is never printed.
    url = hub.push_folder(args.model, args.repo, token=os.environ.get("HF_TOKEN"), private=args.private)
    print(f"uploaded {args.model} to {url}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .export import export_kind, export_onnx

    bundle = load_model(args.model)
    path = export_onnx(bundle.model, args.onnx)
    what = ("step function (ids, state) -> (logits, state)" if export_kind(bundle.model) == "step"
            else "full-sequence forward ids -> logits")
    print(f"wrote {path}: the {what} of {bundle.name} ({bundle.model.config.arch}); its tokenizer is the "
          "model folder's")
    return 0


def run_pretrained(args: argparse.Namespace) -> int:
    entries = pretrained.catalog()
    if not entries:
        print(f"no pretrained models in {pretrained.pretrained_dir()}")
    for entry in entries:
        print(f"{entry.name:<28} {entry.repo_id:<44} {entry.description}")
    return 0


def run_recipe(args: argparse.Namespace) -> int:
    if args.list or not args.name:
        for item in recipes.RECIPES.values():
            print(f"{item.name:<26} {item.title}")
        return 0
    item = recipes.recipe(args.name).with_device(args.device)
    print(f"{item.title}\nreference: {item.reference}", file=sys.stderr)
    labels = args.runs.split(",") if args.runs else None
    results = recipes.run_recipe(item, args.out, args.max_minutes, labels,
                                 callbacks=(lambda e: print(f"  step {e.step}: val {e.val_loss:.4f}",
                                                            file=sys.stderr) if e.kind == "eval" else None,))
    print(f"{'run':<20} {'params':>10} {'steps':>7} {'time s':>8} {'train':>8} {'val':>8} {'bpc':>7}  stop")
    for run, result in results:
        info, evals = result.bundle.info, result.history.evals
        print(f"{run.label:<20} {info['parameters']:>10,} {info['steps']:>7} {info['elapsed_s']:>8.1f} "
              f"{min(p['train_loss'] for p in evals):>8.4f} {info['best_val_loss']:>8.4f} "
              f"{info['best_val_bpc']:>7.3f}  {info['stop_reason']}")
    for run, result in results:
        text = api.generate(result.bundle, item.prompt, length=200, temperature=0.8, seed=1)[0]
        print(f"\n=== {run.label} (temperature 0.8, seed 1) ===\n{text}")
    # run_recipe returns finished runs: each history ends with its TrainingEnded
    return 130 if results and cast(TrainingEnded, results[-1][1].history.end).reason == "stopped" else 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    handlers = {"train": run_train, "sample": run_sample, "evaluate": run_evaluate, "push": run_push,
                "pretrained": run_pretrained, "recipe": run_recipe, "runs": cli_runs.run,
                "surprisal": run_surprisal, "export": run_export}
    try:
        return handlers[args.command](args)
    except FailedElsewhere:   # rank 0 printed why
        return 2
    except TextgenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unreadable input, unwritable output folder, full disk
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
