#!/usr/bin/env bash
# The FCN paper's PASCAL VOC 2011 results, reproduced with fcn-port end to end:
#   data -> VGG16 transplanted into FCN-32s -> train 32s -> 16s -> 8s (or 8s at once) with the
#   official solvers and data layers, each stage scored on seg11valid -> results table next to
#   the paper's 63.6 / 65.0 / 65.5 (at once: 65.4) mean IU, loss curves, prediction grids.
#
#   bash reproduce/voc2011.sh [--work DIR] [--atonce] [--device D] [--eval-every N]
#   bash reproduce/voc2011.sh --eval-official   # score the released caffemodels instead
#   bash reproduce/voc2011.sh --smoke           # the same steps on generated data, ~30 s on CPU
#
# Every stage resumes: a finished stage (its final snapshot) is skipped, an interrupted one goes
# on from its newest .solverstate, a finished download or evaluation is not redone. The stages
# and their iterations are solve.py's: 32s, 16s and 8s 100,000 iterations each (25 x 4,000),
# at-once 300,000 (75 x 4,000), scored every 4,000 as seg_tests does. See README "Reproducing
# the paper". --work defaults to ./voc2011-run; --device to auto (CUDA when available, else
# the CPU; each training and evaluation says which it runs on).
set -euo pipefail

WORK=voc2011-run; SMOKE=0; ATONCE=0; OFFICIAL=0; DEVICE=auto; EVAL_EVERY=""; ITERS=""; QUIET=()
usage() { sed -n '2,/^[^#]/p' "$0" | sed -n 's/^# \{0,1\}//p'; }
die() { echo "voc2011.sh: error: $*" >&2; exit 2; }
value() {  # OPTION VALUE: a value that is there and is no option
  if [ -z "${2-}" ] || [ "${2#--}" != "$2" ]; then die "$1 needs $3"; fi
}
while [ $# -gt 0 ]; do
  case "$1" in
    --work) value "$1" "${2-}" "a folder"; WORK=$2; shift ;;
    --smoke) SMOKE=1 ;;
    --atonce) ATONCE=1 ;;
    --eval-official) OFFICIAL=1 ;;
    --device) value "$1" "${2-}" "auto, cpu, cuda or cuda:N"; DEVICE=$2; shift ;;
    --eval-every) value "$1" "${2-}" "a number of iterations"; EVAL_EVERY=$2; shift ;;
    --iters) value "$1" "${2-}" "a number of iterations"; ITERS=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
  shift
done
[ "$SMOKE" = 1 ] && [ "$OFFICIAL" = 1 ] && die "--smoke and --eval-official exclude each other"

# Every step is an fcn-port verb, so whichever fcn-port is found (a venv's, active or not)
# brings its own Python. FCN_PORT overrides it (tests run "python -m fcn_port.cli").
FCN=${FCN_PORT:-fcn-port}
command -v "${FCN%% *}" > /dev/null || die "'${FCN%% *}' not found: install fcn-port \
(pip install -e .) or activate its environment"
mkdir -p "$WORK/results"
WORK=$(cd "$WORK" && pwd)  # absolute: stages run inside their own folders
DATA=$WORK/data
VOC=$DATA/pascal/VOC2011
say() { printf '\n== %s\n' "$*"; }

# ---- sizes: the paper's, or a reduced net on generated data for --smoke
if [ "$SMOKE" = 1 ]; then
  WIDTHS=(4 8 16 32 32); FC=64
  ITERS=${ITERS:-20}; EVAL_EVERY=${EVAL_EVERY:-10}
  QUIET=(--quiet)  # the real run shows Caffe's log lines and a progress bar
else
  WIDTHS=(64 128 256 512 512); FC=4096
  EVAL_EVERY=${EVAL_EVERY:-4000}
fi
NETARGS=(--widths "${WIDTHS[@]}" --fc "$FC")

# ---- 1. data and the ILSVRC base
BASE=$WORK/ilsvrc-nets/VGG_ILSVRC_16_layers.caffemodel
if [ "$SMOKE" = 1 ]; then
  if [ ! -f "$WORK/data/.complete" ]; then
    say "generating a small VOC 2011 + SBD dataset and a reduced VGG16 base"
    mkdir -p "$(dirname "$BASE")"
    $FCN synthetic "$DATA" --train 40 --val 8 --size 64 96 --seed 1 \
      --base "$BASE" "${NETARGS[@]}"
    touch "$WORK/data/.complete"
  fi
else
  if [ "$OFFICIAL" = 1 ]; then  # scoring only: no SBD, no VGG16
    say "downloading VOC 2011 and seg11valid (resumable)"
    $FCN download voc2011 seg11valid -o "$DATA" --extract
  else
    say "downloading VOC 2011, SBD, seg11valid and VGG16 (resumable)"
    $FCN download voc2011 sbd seg11valid -o "$DATA" --extract
    $FCN download vgg16 -o "$WORK/ilsvrc-nets"
  fi
fi

# ---- evaluation of one checkpoint on seg11valid: JSON, prediction grid (skipped when done)
evaluate() {  # NAME CHECKPOINT
  local out=$WORK/results/$1
  if [ ! -s "$out.json" ]; then
    say "scoring $1 on seg11valid"
    $FCN eval "$2" --dataset voc --split seg11valid --root "$VOC" --device "$DEVICE" \
      --grid "$out-grid.png" --json > "$out.json.part"
    mv "$out.json.part" "$out.json"
  fi
}

STAGES=()
if [ "$OFFICIAL" = 1 ]; then
  # ---- the released models, converted and scored
  for m in voc-fcn32s voc-fcn16s voc-fcn8s voc-fcn8s-atonce; do
    case $m in  # the released files' names (caffemodel-url of each model folder)
      voc-fcn8s-atonce) file=fcn8s-atonce-pascal.caffemodel ;;
      *) file=${m#voc-}-heavy-pascal.caffemodel ;;
    esac
    $FCN download "$m" -o "$WORK/official"
    evaluate "$m" "$WORK/official/$file"
    STAGES+=(--stage "$m=$WORK/results/$m.json")
  done
else
  # ---- 2-4. staged training (solve.py of each official model)
  if [ "$ATONCE" = 1 ]; then MODELS=(voc-fcn8s-atonce); else MODELS=(voc-fcn32s voc-fcn16s voc-fcn8s); fi
  FROM=$BASE
  for m in "${MODELS[@]}"; do
    dir=$WORK/$m
    final=$dir/$m.caffemodel
    if [ ! -f "$final" ]; then
      [ -f "$dir/solver.prototxt" ] || $FCN net "$m" -o "$dir" "${NETARGS[@]}"
      [ -f "$dir/init.caffemodel" ] || {
        say "$m: transplanting $(basename "$FROM") (copy by name, fc -> conv, bilinear 'up' layers)"
        $FCN surgery transplant "$FROM" --net "$dir/train.prototxt" -o "$dir/init.caffemodel"; }
      iters=()
      [ -n "$ITERS" ] && iters=(--max-iter "$ITERS")
      say "$m: training (from its newest snapshot if it has one)"
      (cd "$dir" && $FCN train --solver solver.prototxt --weights init.caffemodel \
        --snapshot latest --data-root "$DATA" --device "$DEVICE" \
        --eval-every "$EVAL_EVERY" "${iters[@]+"${iters[@]}"}" "${QUIET[@]+"${QUIET[@]}"}")
      snap=$(ls -t "$dir"/snapshot/*.caffemodel* | head -1)
      cp "$snap" "$final.part" && mv "$final.part" "$final"
    fi
    evaluate "$m" "$final"
    STAGES+=(--stage "$m=$WORK/results/$m.json,$dir/snapshot/train_log.csv,$dir/snapshot/train_eval.csv")
    FROM=$final
  done
fi

# ---- 5. the table next to the paper's, curves
say "results"
title="FCN on PASCAL VOC 2011 seg11valid"
[ "$SMOKE" = 1 ] && title="$title (SMOKE: generated data, a reduced net from a random base, \
${ITERS} iterations a stage at the paper's learning rates: this checks the pipeline, not accuracy)"
[ "$OFFICIAL" = 1 ] && title="$title (the released caffemodels)"
$FCN report "${STAGES[@]}" -o "$WORK/results" --title "$title"
