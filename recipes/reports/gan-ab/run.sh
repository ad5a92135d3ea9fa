#!/usr/bin/env bash
# Issue 37's A/B: four students from the shipped one (recipes/checkpoints/cpu/student.pt), the same
# data, seed (windows and noise) and learning rate, each stopped at the same CPU time of its own
# training process (--max-cpu-minutes), run side by side on the shared 2-core host (nice 5, one
# torch thread each, no DataLoader workers so the data loading is in the budget too). Eager
# (compile=false): on 2026-12-07, with the host at load ~20, four arms compiling at once had not
# finished their first step after 12 minutes, and the compile's in-process CPU (>40 s per arm, more
# with the teacher) would have come out of a budget of a few minutes.
#   CPU_MINUTES=5 recipes/reports/gan-ab/run.sh            (from the repository root)
#   ARMS="c-stft-adv d-stft-kl-adv" recipes/reports/gan-ab/run.sh      (some arms only)
#   OUT=runs/gan-ab2 CPU_MINUTES=40 ARMS="a-stft e-stft-adv-slow" recipes/reports/gan-ab/run.sh  (round two)
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA=${DATA:-data/flite}
OUT=${OUT:-runs/gan-ab}
CPU_MINUTES=${CPU_MINUTES:-5}
mkdir -p "$OUT"
common=(--data "$DATA" --init recipes/checkpoints/cpu/student.pt --preset cpu --device cpu
    --max-cpu-minutes "$CPU_MINUTES" --set steps=100000 --set lr=2e-4 --set warmup_steps=100
    --set decay=constant --set threads=1 --set num_workers=0 --set val_every=500 --set val_batches=4
    --set sample_every=-1 --set checkpoint_minutes=5 --set log_every=25 --set compile=false)
kl=(--teacher recipes/checkpoints/cpu/teacher.pt --set kl_weight=0.02 --set reg_weight=0.08)
adv=(--set adv_weight=1 --set fm_weight=2 --set disc_warmup=50 --set adv_ramp=50
    --set disc_mpd_channels=16 --set disc_mrd_channels=8)
arm() {
    local name=$1
    shift
    nice -n 5 "$PY" -m model.train.cli student --out "$OUT/$name" "${common[@]}" "$@" >"$OUT/$name.log" 2>&1
}
# the second round (2026-12-08): the discriminators learn alone for 1,000 steps, then reach the student
# over 2,000 more at a quarter of the weight (round one's 50-step warm-up measured only the transient)
slow=(--set adv_weight=0.25 --set fm_weight=2 --set disc_warmup=1000 --set adv_ramp=2000
    --set disc_mpd_channels=16 --set disc_mrd_channels=8)
declare -A extra=([a-stft]="" [b-stft-kl]="${kl[*]}" [c-stft-adv]="${adv[*]}" [d-stft-kl-adv]="${kl[*]} ${adv[*]}"
    [e-stft-adv-slow]="${slow[*]}" [f-stft-kl-adv-slow]="${kl[*]} ${slow[*]}")
for name in ${ARMS:-a-stft b-stft-kl c-stft-adv d-stft-kl-adv}; do
    read -r -a args <<<"${extra[$name]}"
    arm "$name" "${args[@]}" &
done
wait
