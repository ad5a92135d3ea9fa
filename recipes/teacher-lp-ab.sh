#!/usr/bin/env bash
# Issue 38's A/B: today's teacher vs the same teacher with a linear-prediction mean, both from
# scratch, same data, same seed, one core each, side by side (so each gets the same share of the
# machine; the comparison axis is samples seen, which does not depend on that share).
#
#   recipes/teacher-lp-ab.sh start [MINUTES]   both arms in the background (resumable: each resumes
#                                              from RUN/<arm>/checkpoints/last.pt), logs in RUN/<arm>.log
#   recipes/teacher-lp-ab.sh status            steps, validation NLLs and CPU time of each arm
#   recipes/teacher-lp-ab.sh save              each arm's last.pt -> recipes/checkpoints/cpu/teacher-ab-<arm>.pt
#   recipes/teacher-lp-ab.sh restore           the reverse, on a fresh checkout (never over a newer run)
#
# Arms: "base" = the campaign's teacher (TEACHER_ARGS of recipes/flite.cpu.env); "lp" = the same
# with --set model.lpc_order=16 (model/lpc.py). RUN defaults to runs/teacher-lp-ab.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck source=/dev/null
source "$here/flite.cpu.env"
AB_RUN="${AB_RUN:-runs/teacher-lp-ab}"
SAVE_DIR="${SAVE_DIR:-recipes/checkpoints/cpu}"
NICE="${NICE:-5}"
declare -A ARM_ARGS=([base]="" [lp]="--set model.lpc_order=16")
pw=(.venv/bin/python -m service.cli)

arm_args() {  # the teacher arguments of an arm
    local -a args
    read -r -a args <<<"$TEACHER_ARGS ${ARM_ARGS[$1]}"
    printf '%s\n' "${args[@]}"
}

case "${1:-}" in
start)
    minutes="${2:-600}"
    for arm in "${!ARM_ARGS[@]}"; do
        mkdir -p "$AB_RUN"
        mapfile -t args < <(arm_args "$arm")
        setsid nohup nice -n "$NICE" "${pw[@]}" train teacher --data "$CORPUS" --out "$AB_RUN/$arm" --resume \
            --device cpu --max-minutes "$minutes" "${args[@]}" >>"$AB_RUN/$arm.log" 2>&1 &
        echo "$arm: pid $! -> $AB_RUN/$arm.log"
    done
    ;;
status)
    for arm in "${!ARM_ARGS[@]}"; do
        echo "== $arm"
        grep -h "val loss" "$AB_RUN/$arm/train.log" 2>/dev/null | tail -n 3 || true
        pid=$(pgrep -f -- "--out $AB_RUN/$arm " | head -n 1 || true)
        [[ -n "$pid" ]] && echo "running: pid $pid, CPU time $(ps -o cputime= -p "$pid")"
    done
    ;;
save)
    for arm in "${!ARM_ARGS[@]}"; do
        src="$AB_RUN/$arm/checkpoints/last.pt"
        [[ -f "$src" ]] && cp "$src" "$SAVE_DIR/teacher-ab-$arm.pt" && echo "saved $src"
    done
    ;;
restore)
    for arm in "${!ARM_ARGS[@]}"; do
        src="$SAVE_DIR/teacher-ab-$arm.pt" dst="$AB_RUN/$arm/checkpoints/last.pt"
        if [[ -f "$src" && ! ( -f "$dst" && "$dst" -nt "$src" ) ]]; then
            mkdir -p "$(dirname "$dst")" && cp "$src" "$dst" && echo "restored $dst"
        fi
    done
    ;;
*)
    echo "usage: $0 start [MINUTES] | status | save | restore" >&2
    exit 2
    ;;
esac
