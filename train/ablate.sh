#!/usr/bin/env bash
# Issue 13's ablations: each recipe on the same 30-epoch schedule, compared on PublicTest only.
# Resumable: run it again and every run continues from its last checkpoint; finished runs are skipped,
# and so are runs stopped on purpose (a STOPPED file in the run folder says why).
# Usage: nohup nice -n 19 bash train/ablate.sh RUNS_DIR > RUNS_DIR/ablate.out 2>&1 &
set -u
runs=${1:?usage: bash train/ablate.sh RUNS_DIR}
mkdir -p "$runs"
cd "$(dirname "$0")/.."
for spec in "base30:--labels fer2013" "ferplus30:--labels ferplus" "webcam30:--labels fer2013 --webcam 0.5" \
            "mixup30:--labels fer2013 --mixup 0.2"; do
  name=${spec%%:*}; flags=${spec#*:}
  if [ -f "$runs/$name/STOPPED" ]; then continue; fi
  if [ -f "$runs/$name/history.jsonl" ] && [ "$(wc -l < "$runs/$name/history.jsonl")" -ge 30 ]; then continue; fi
  if [ -f "$runs/$name/last.keras" ]; then resume=--resume; else resume=; fi
  python -m train fit --run "$runs/$name" --epochs 30 $flags $resume >> "$runs/$name.log" 2>&1
done
