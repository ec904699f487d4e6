#!/usr/bin/env bash
# Trains the bundled models in textgen_core/pretrained_models/ with this project's own CLI; each model
# card records its command and hardware (make_cards.py then points its usage at the catalog's repo id).
# Two lanes run side by side, one CPU thread each: on a 2-core CPU one thread per training process
# gives more tokens/s in all than one process on two threads (BENCHMARKS.md).
#
# Usage: scripts/train_pretrained.sh [NAME...]     (no name: all of them, in two lanes)
#   DATA_DIR       folder with tinyshakespeare.txt, alice.txt, lyrics_public_domain.txt (default ../shared/data)
#   MINUTES_SCALE  multiplies every time budget (default 1; the budgets are for a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${DATA_DIR:-../shared/data}
scale=${MINUTES_SCALE:-1}
py=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=PASSIVE
out=textgen_core/pretrained_models
mkdir -p "$out" logs
minutes() { awk -v m="$1" -v s="$scale" 'BEGIN { print m * s }'; }
train() {  # NAME CORPUS MINUTES ARGS...
  local name=$1 corpus=$2 budget; budget=$(minutes "$3"); shift 3
  rm -rf "${out:?}/$name"
  "$py" -m textgen_core train "$data/$corpus" --out "$out/$name" --max-minutes "$budget" \
    --seed 1 "$@" > "logs/pretrained-$name.log" 2>&1
  rm -rf "$out/$name/checkpoint"  # the bundled copy is for sampling, not for resuming
  tail -n 2 "logs/pretrained-$name.log"
}

model_shakespeare_char_lstm() {
  train shakespeare-char-lstm tinyshakespeare.txt 85 --model lstm --preset small --dropout 0.2 \
    --batch-size 32 --seq-len 128 --lr 4e-3 --precision bf16 --eval-every 500
}
model_shakespeare_char_gru() {
  train shakespeare-char-gru tinyshakespeare.txt 22 --model gru --preset small --dropout 0.2 \
    --batch-size 32 --seq-len 128 --lr 3e-3 --precision bf16 --eval-every 400
}
model_alice_word_gru() {
  train alice-word-gru alice.txt 6 --tokenizer word --vocab-size 3000 --model gru --preset small \
    --dropout 0.4 --batch-size 32 --seq-len 48 --lr 3e-3 --precision bf16 --eval-every 100 --patience 5
}
model_lyrics_sp_lstm() {
  train lyrics-sp-lstm lyrics_public_domain.txt 9 --tokenizer sentencepiece --vocab-size 1000 --model lstm \
    --preset small --dropout 0.3 --batch-size 32 --seq-len 64 --lr 3e-3 --precision bf16 --eval-every 150 \
    --patience 5
}
model_lyrics_char_cnn() {
  train lyrics-char-cnn lyrics_public_domain.txt 8 --model cnn --preset small --dropout 0.2 \
    --batch-size 32 --seq-len 128 --lr 2e-3 --precision bf16 --eval-every 200 --patience 5
}
model_lyrics_char_attention() {
  train lyrics-char-attention lyrics_public_domain.txt 14 --model attention --preset small --dropout 0.1 \
    --batch-size 32 --seq-len 128 --lr 2e-3 --precision bf16 --eval-every 200 --patience 5
}

run() { for name in "$@"; do "model_${name//-/_}"; done; }
if (($#)); then
  run "$@"
else
  run shakespeare-char-lstm &
  run shakespeare-char-gru alice-word-gru lyrics-sp-lstm lyrics-char-cnn lyrics-char-attention &
  wait
fi
"$py" scripts/make_cards.py
