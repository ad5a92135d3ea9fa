#!/usr/bin/env bash
# The default voice, one command per stage:
#
#   recipes/flite-voice.sh [--profile cpu|gpu] STAGE...
#
# Stages, in order (`all` runs them one after the other):
#   corpus    render the LJSpeech transcripts with flite (train/val/test, every speaker), check the
#             folder, cache the mels, write the phoneme manifest
#   acoustic  train the acoustic model (text -> mel)           RUN/acoustic
#   teacher   train the WaveNet teacher (TEACHER=1 only)       RUN/teacher
#   student   train the Parallel WaveNet student: distilled from RUN/teacher when DISTILL=1, else
#             spectral-only (STFT loss)                        RUN/student
#   export    write VOICES_DIR/VOICE (default voices/; parity-checked ONNX bundle)
#   eval      parawave eval on the test split                  RUN/eval
#   save      copy each RUN/<model>/checkpoints/last.pt to CHECKPOINTS (recipes/checkpoints/<profile>/, committed,
#             so training continues in another session or machine)
#   restore   the reverse, before resuming on a fresh checkout (never overwrites a newer run)
#
# The configuration of a profile is recipes/flite.<profile>.env (committed); any of its variables
# can be set in the environment. Every training stage resumes from RUN/<model>/checkpoints/last.pt,
# so a stage can be stopped and rerun (MINUTES=N trains for at most N minutes per command).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."

profile="${PROFILE:-cpu}"
if [[ "${1:-}" == "--profile" ]]; then
    profile="${2:?--profile needs cpu or gpu}"
    shift 2
fi
env_file="$here/flite.${profile}.env"
[[ -f "$env_file" ]] || { echo "error: unknown profile '$profile' (no $env_file)" >&2; exit 2; }
# shellcheck source=/dev/null
source "$env_file"
MINUTES="${MINUTES:-}"
DISTILL="${DISTILL:-$TEACHER}"
VOICES_DIR="${VOICES_DIR:-voices}"

if [[ -n "${PARAWAVE:-}" ]]; then
    read -r -a pw <<<"$PARAWAVE"
elif [[ -x .venv/bin/parawave ]]; then
    pw=(.venv/bin/parawave)
else  # e.g. the GPU host: no install, the repository on PYTHONPATH
    pw=(python3 -m service.cli)
fi
text_dir="${TEXT_DIR:-../shared/corpus/ljspeech-text}"
chunk=()
[[ -n "$MINUTES" ]] && chunk=(--max-minutes "$MINUTES")

say() { printf '\n== %s\n' "$*" >&2; }

ckpt() {  # best.pt of a run (selected on validation), else last.pt
    local dir="$RUN/$1/checkpoints"
    if [[ -f "$dir/best.pt" ]]; then echo "$dir/best.pt"
    elif [[ -f "$dir/last.pt" ]]; then echo "$dir/last.pt"
    else echo "error: no checkpoint in $dir: run the '$1' stage first" >&2; return 1
    fi
}

stage_corpus() {
    say "corpus: $SPEAKERS speaking $TRAIN_LINES train / all val / $TEST_LINES test lines -> $CORPUS"
    "${pw[@]}" data render --text "$text_dir/train.txt" --limit "$TRAIN_LINES" --voice "$SPEAKERS" \
        --out "$CORPUS" --jobs "$JOBS" --no-progress
    "${pw[@]}" data render --text "$text_dir/val.txt" --voice "$SPEAKERS" --out "$CORPUS" --jobs "$JOBS" --no-progress
    "${pw[@]}" data render --text "$text_dir/test.txt" --limit "$TEST_LINES" --voice "$SPEAKERS" \
        --out "$CORPUS" --jobs "$JOBS" --no-progress
    "${pw[@]}" data ingest "$CORPUS"
    "${pw[@]}" data features "$CORPUS" --jobs "$JOBS"
    "${pw[@]}" data manifest "$CORPUS"
}

train() {  # train <kind> <run dir name> [extra args...]; the profile's <KIND>_ARGS
    local kind="$1" name="$2"
    shift 2
    local var="${kind^^}_ARGS"
    local -a args
    read -r -a args <<<"${!var}"
    say "$kind -> $RUN/$name (${args[*]})"
    "${pw[@]}" train "$kind" --data "$CORPUS" --out "$RUN/$name" --resume --device "$DEVICE" \
        "${args[@]}" "${chunk[@]}" "$@"
}

stage_acoustic() {
    local -a extra=()
    if [[ -n "${ACOUSTIC_INIT:-}" && ! -f "$RUN/acoustic/checkpoints/last.pt" ]]; then
        extra+=(--init "$ACOUSTIC_INIT")  # e.g. a model without pitch as the start of a pitch-aware one
    fi
    train acoustic acoustic "${extra[@]}"
}

stage_teacher() {
    if [[ "$TEACHER" != 1 ]]; then
        say "teacher: skipped (TEACHER=$TEACHER in the $profile profile)"
        return 0
    fi
    train teacher teacher
}

stage_student() {
    local -a extra=()
    if [[ "$DISTILL" == 1 ]]; then
        extra=(--teacher "$(ckpt teacher)")
    fi
    if [[ -n "${STUDENT_INIT:-}" && ! -f "$RUN/student/checkpoints/last.pt" ]]; then
        extra+=(--init "$STUDENT_INIT")  # e.g. a spectral-only student as the distillation's start
    fi
    train student student "${extra[@]}"
}

stage_export() {
    local -a vocoders=(--student "$(ckpt student)")
    if [[ "$TEACHER" == 1 ]]; then
        vocoders+=(--teacher "$(ckpt teacher)")
    fi
    local -a args
    read -r -a args <<<"$EXPORT_ARGS"
    say "export -> $VOICES_DIR/$VOICE"
    "${pw[@]}" export voice --name "$VOICE" --acoustic "$(ckpt acoustic)" "${vocoders[@]}" \
        --out "$VOICES_DIR" --overwrite "${args[@]}"
}

stage_eval() {
    local -a args
    read -r -a args <<<"$EVAL_ARGS"
    say "eval $VOICES_DIR/$VOICE on $CORPUS (test split) -> $RUN/eval"
    "${pw[@]}" eval --voice "$VOICE" --voices-dir "$VOICES_DIR" --data "$CORPUS" --split test \
        --out "$RUN/eval" "${args[@]}"
}

saved="${CHECKPOINTS:-$here/checkpoints/$profile}"

stage_save() {
    mkdir -p "$saved"
    for model in acoustic teacher student; do
        local src="$RUN/$model/checkpoints/last.pt"
        [[ -f "$src" ]] || continue
        cp "$src" "$saved/$model.pt.tmp" && mv "$saved/$model.pt.tmp" "$saved/$model.pt"
        say "saved $src -> $saved/$model.pt"
    done
}

stage_restore() {
    for model in acoustic teacher student; do
        local src="$saved/$model.pt" dst="$RUN/$model/checkpoints/last.pt"
        [[ -f "$src" ]] || continue
        if [[ -f "$dst" && "$dst" -nt "$src" ]]; then
            say "kept $dst (newer than $src)"
            continue
        fi
        mkdir -p "$(dirname "$dst")" && cp "$src" "$dst"
        say "restored $src -> $dst"
    done
}

[[ $# -gt 0 ]] || { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
for stage in "$@"; do
    case "$stage" in
        corpus | acoustic | teacher | student | export | eval | save | restore) "stage_$stage" ;;
        all) for s in corpus acoustic teacher student export eval; do "stage_$s"; done ;;
        *) echo "error: unknown stage '$stage' (corpus, acoustic, teacher, student, export, eval, save, restore, all)" >&2; exit 2 ;;
    esac
done
