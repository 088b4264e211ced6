#!/usr/bin/env bash
# Issue 13's ablations: one 30-epoch run per recipe, each chosen on PublicTest only.
# Resumable: run it again (e.g. in a later session) and it continues the unfinished run.
#   nohup nice -n 19 bash train/ablate.sh /work/runs > /work/runs/ablate.out 2>&1 &
set -u
runs=${1:-runs}
epochs=30
cd "$(dirname "$0")/.."
for spec in "base30:--labels fer2013" "ferplus30:--labels ferplus"; do
  name=${spec%%:*}; flags=${spec#*:}
  done_epochs=$(wc -l < "$runs/$name/history.jsonl" 2>/dev/null || echo 0)
  [ "$done_epochs" -ge "$epochs" ] && continue
  resume=$([ -f "$runs/$name/last.keras" ] && echo --resume)
  nice -n 19 python -m train fit --run "$runs/$name" --epochs "$epochs" $flags $resume >> "$runs/$name.log" 2>&1
done
