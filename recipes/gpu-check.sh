#!/usr/bin/env bash
# One prepared GPU check (issue 21): the CUDA provider, the fp16 student, dynamic batching and the
# serving path on one H100/H200, measured in one short window. Rehearsed on CPU by --dry-run (CI).
#
#   recipes/gpu-check.sh prepare          HERE: build .gpucheck/a and .gpucheck/b (the carried
#                                         folders), check their sizes, print the two device calls
#   recipes/gpu-check.sh stage            DEVICE call 1: keep onnxruntime part 1 in /tmp/gpucheck,
#                                         install the wheels, export the bundle in the background
#   recipes/gpu-check.sh run --out DIR    DEVICE call 2: the check (below); reports into DIR
#   recipes/gpu-check.sh --dry-run --out DIR
#                                         HERE/CI: the same steps on the CPU provider, tiny sizes
#
# Why two calls. onnxruntime-gpu 1.31.1 (cp312) is a 255 MB wheel; a call carries 64 MiB, the
# working tree included (~24 MiB tracked). recipes/ort_slim.py keeps only the sm_90 images of the
# CUDA provider's fat binaries and leaves out the C-API library and the TensorRT provider: 58.9 MiB
# as .tar.xz, still more than one call can take beside the tree. So call 1 carries part 1 (+ the
# wheels), call 2 the rest; the machine stays warm 30 s after a call, and disk /tmp survives
# between two calls on the same machine. Call 2 stops at once with one line if part 1 is not there
# (the machine went back in between): then make both calls again.
#
# The check (call 2; --dry-run: the same on CPU):
#   1 install  onnxruntime-gpu from the two parts (sha256-checked), the wheels (fastapi, uvicorn,
#              pydantic, soundfile, phonemizer, espeak-ng English, num2words) into /tmp/gpucheck
#   2 probe    does onnxruntime-gpu load the CUDA/cuDNN libraries torch ships as NVIDIA pip
#              packages? tries onnxruntime.preload_dlls() (what service/engine.py does), then
#              LD_LIBRARY_PATH over the nvidia/*/lib folders, then `import torch` first; the first
#              that runs a Conv+MatMul session on CUDA is used for the rest   -> cuda-probe.json
#   3 export   `parawave export random --preset gpu --fp16 --no-teacher` (the Parallel WaveNet
#              student, fp32 + fp16; started by call 1, waited for here)     -> export.log, voice.json
#   4 bench    `parawave bench --device cuda --student-seconds 10 --batch 1,2,...,64`: student
#              samples/s at batch 1 and every batch (the best is picked), fp32 and fp16, as
#              `--json` (recipes/gpu_check.py reads the numbers)   -> bench.json (+ bench.log)
#   5 serve    `parawave serve --device cuda --require-cuda` (dynamic batching on), ready check
#   6 sweep    service.loadtest.sweep, concurrency 1,2,4,...,256, stop after the first level whose
#              p95 time to first audio passes 250 ms                         -> sweep/report.*
#   7 summary  summary.json + summary.md (the README's numbers), env.json (versions, GPU, step
#              times), then verify: every report there with sane content (exit 1 otherwise); on
#              the device export.log, serve.log, voice.json and sweep/report.png then go into
#              extras.tar.gz, since a call returns 8 files at most (8 come back)
#
# Time plan, device (the lease counts start, transfers, idle and close):
#   call 1  machine start                                     60-120 s
#           transfer: tree ~24 MiB + .gpucheck/a ~38 MiB      ~15 s
#           stage: copy part 1, install wheels (~3 s), launch the export (detached)   ~10 s
#   gap     the next call within 30 s (the machine stays warm 30 s; the export runs meanwhile)
#   call 2  transfer: tree + .gpucheck/b ~25 MiB              ~10 s
#           1 install ~15 s | 2 probe ~15 s (up to 3 tries ~45 s) | 3 export wait 0-60 s
#           4 bench ~90 s (10 s utterance, 7 batch sizes x 2 precisions x 6 runs, + warm-up)
#           5 serve start + CUDA warm-up ~20 s | 6 sweep <= 9 levels x ~11 s ~100 s | 7 ~5 s
#           command ~4.5 min, hard stop at DEADLINE_S=420 s (steps left are skipped, reports kept)
#   close   give_back at once                                 ~5 s
#   total   ~8 min expected, < 11.5 min worst case (2 + 0.5 + 0.5 + 8 + 0.5): under 12 minutes
#
# Device calls (paths relative to the repository root that the tool sends; prepare prints them
# again with the sizes measured):
#   run(command="bash recipes/gpu-check.sh stage", carry=[".gpucheck/a"], timeout_s=120)
#   run(command="bash recipes/gpu-check.sh run --out $OUT", carry=[".gpucheck/b"], timeout_s=480)
#   give_back()
# Then, here: copy the reports from the tool's files_at folder to recipes/reports/gpu-check/ and
# commit; the README's CUDA numbers come from summary.md.
#
# Environment: PYTHON (default python3; the device's has torch), DEADLINE_S (run's hard stop),
# ORT_VERSION (1.31.1), ORT_ARCH (90), GPU_CHECK_CONCURRENCY, GPU_CHECK_BATCHES, PARAWAVE_* for the
# server (e.g. PARAWAVE_MAX_BATCH; default 8 on CUDA).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

die() { echo "gpu-check: error: $*" >&2; exit 1; }

PY="${PYTHON:-python3}"
ORT_VERSION="${ORT_VERSION:-1.31.1}"
ORT_ARCH="${ORT_ARCH:-90}"
TMPD="${GPU_CHECK_TMP:-/tmp/gpucheck}"
CARRY=".gpucheck"
LIMIT_BYTES=$((64 * 1024 * 1024))
MARGIN_BYTES=$((3 * 1024 * 1024)) # the tree may grow a little between prepare and the calls
# the wheels the device image lacks (versions as tested here; see ../shared/GPU.md)
WHEELS=(
    soundfile==0.14.0 cffi==2.1.1 pycparser==3.12
    pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
    annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
    fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 uvicorn==0.54.0
    phonemizer==3.4.0 dlinfo==2.0.0 espeakng-loader==0.2.4 num2words==0.5.14
)

# ------------------------------------------------------------------------------------ here: prepare

tree_bytes() { # what the device tool sends besides the carried paths: tracked + untracked-not-ignored
    git ls-files -z --cached --others --exclude-standard | (xargs -0 -r stat -c %s 2>/dev/null || true) |
        awk '{s += $1} END {print s + 0}'
}

dir_bytes() { find "$1" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

prepare() {
    git check-ignore -q "$CARRY/x" || die "$CARRY/ is not git-ignored (add /$CARRY/ to .gitignore)"
    local cache="$CARRY/cache"
    mkdir -p "$cache/dl" "$cache/whl"
    local whl
    whl=$(ls "$cache"/dl/onnxruntime_gpu-"$ORT_VERSION"-cp312-*.whl 2>/dev/null | head -1 || true)
    if [[ -z "$whl" ]]; then
        echo "gpu-check: downloading onnxruntime-gpu $ORT_VERSION (cp312, ~255 MB)"
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            -d "$cache/dl" "onnxruntime-gpu==$ORT_VERSION" || die "pip download onnxruntime-gpu==$ORT_VERSION failed"
        whl=$(ls "$cache"/dl/onnxruntime_gpu-"$ORT_VERSION"-cp312-*.whl | head -1)
    fi
    if [[ ! -f "$cache/ort/ort-slim.tar.xz" || "$whl" -nt "$cache/ort/ort-slim.tar.xz" ]]; then
        echo "gpu-check: slimming $(basename "$whl") to sm_$ORT_ARCH (xz; a few minutes on 2 cores)"
        "$PY" recipes/ort_slim.py "$whl" --arch "$ORT_ARCH" --out "$cache/ort" || die "ort_slim.py failed"
    fi
    if [[ ! -f "$cache/whl/.done" ]]; then
        echo "gpu-check: downloading the wheels the device lacks"
        rm -rf "$cache/whl" && mkdir -p "$cache/whl/raw"
        "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
            --platform manylinux2014_x86_64 --platform any -d "$cache/whl/raw" "${WHEELS[@]}" ||
            die "pip download of the wheels failed"
        for w in "$cache"/whl/raw/*.whl; do
            case "$(basename "$w")" in
            espeakng_loader-*) "$PY" recipes/gpu_check.py slim-espeak "$w" "$cache/whl" >/dev/null ;;
            *) cp "$w" "$cache/whl/" ;;
            esac
        done
        rm -rf "$cache/whl/raw" && touch "$cache/whl/.done"
    fi
    # split: call 1 takes the wheels + part 1 of the archive, call 2 part 2
    local tree wheels archive part1
    tree=$(tree_bytes)
    wheels=$(dir_bytes "$cache/whl")
    archive=$(stat -c %s "$cache/ort/ort-slim.tar.xz")
    # both calls about the same size, so that each keeps some room for the tree to grow
    part1=$(((archive - wheels) / 2))
    ((part1 > 0)) || part1=$archive
    ((tree + wheels + part1 + MARGIN_BYTES <= LIMIT_BYTES)) ||
        die "call 1 would carry $(mib $((tree + wheels + part1))) (tree + .gpucheck/a): over 64 MiB"
    rm -rf "$CARRY/a" "$CARRY/b" && mkdir -p "$CARRY/a/whl" "$CARRY/b"
    cp "$cache"/whl/*.whl "$CARRY/a/whl/"
    head -c "$part1" "$cache/ort/ort-slim.tar.xz" >"$CARRY/a/ort.part1"
    tail -c +"$((part1 + 1))" "$cache/ort/ort-slim.tar.xz" >"$CARRY/b/ort.part2"
    cp "$cache/ort/ort-slim.json" "$CARRY/b/"
    cp "$cache/ort/ort-slim.json" "$CARRY/a/"
    local a b
    a=$(dir_bytes "$CARRY/a")
    b=$(dir_bytes "$CARRY/b")
    ((tree + b + MARGIN_BYTES <= LIMIT_BYTES)) ||
        die "call 2 would carry $(mib $((tree + b))) (tree + .gpucheck/b): over 64 MiB"
    cat <<EOF
gpu-check: prepared (onnxruntime-gpu $ORT_VERSION, sm_$ORT_ARCH only: $(mib "$archive") as .tar.xz)
  working tree that travels: $(mib "$tree")
  call 1: .gpucheck/a $(mib "$a") (wheels $(mib "$wheels") + part 1)  -> $(mib $((tree + a))) of 64 MiB
  call 2: .gpucheck/b $(mib "$b") (part 2)                        -> $(mib $((tree + b))) of 64 MiB
device calls, one right after the other, then give_back:
  run(command="bash recipes/gpu-check.sh stage", carry=[".gpucheck/a"], timeout_s=120)
  run(command="bash recipes/gpu-check.sh run --out \$OUT", carry=[".gpucheck/b"], timeout_s=480)
EOF
}

# ------------------------------------------------------------------------------------ shared steps

declare -A STEP_S=()
STEP_ORDER=()
step_start=0
begin() { step_start=$SECONDS; echo "gpu-check: [$1] $2"; }
done_() { STEP_S[$1]=$((SECONDS - step_start)); STEP_ORDER+=("$1"); }

left() { echo $((DEADLINE - SECONDS)); } # seconds left before the hard stop

bounded() { # bounded SECONDS CMD...: run CMD for at most SECONDS (and never past the deadline)
    local want=$1 have
    shift
    have=$(left)
    ((have > 5)) || { echo "gpu-check: out of time, skipped: $*" >&2; return 124; }
    ((want > have)) && want=$have
    timeout --signal=TERM --kill-after=5 "$want" "$@"
}

install_wheels() { # $1: the folder of wheels
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$TMPD/site" \
        "$1"/*.whl >"$TMPD/pip.log" 2>&1 || { cat "$TMPD/pip.log" >&2; die "installing the carried wheels failed"; }
}

export_args() { # export_args VOICES_DIR PRESET: the Parallel WaveNet student, fp32 + fp16, no teacher
    echo -m service.cli export random --name gpu-check --preset "$2" --no-teacher --fp16 --out "$1" --overwrite
}

write_env() { # env.json: versions, hardware, step times
    local steps="{" k sep=""
    for k in "${STEP_ORDER[@]}" total; do steps+="$sep\"$k\": ${STEP_S[$k]}"; sep=", "; done
    steps+="}"
    MODE="$1" STEPS="$steps" GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)" \
        "$PY" - "$OUTD/env.json" <<'EOF'
import json, os, platform, sys
info = {"mode": os.environ["MODE"], "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "gpu": os.environ.get("GPU") or None, "device": os.environ.get("DEVICE"),
        "steps": json.loads(os.environ["STEPS"])}
for name in ("onnxruntime", "numpy", "torch", "fastapi", "uvicorn", "pydantic", "soundfile"):
    try:
        mod = __import__(name)
        info[name] = getattr(mod, "__version__", "?")
    except Exception as exc:
        info[name] = f"unavailable: {type(exc).__name__}"
json.dump(info, open(sys.argv[1], "w"), indent=2)
EOF
}

server_pid=""
dry_tmp=""
cleanup() {
    stop_server
    if [[ -n "$dry_tmp" ]]; then rm -rf "$dry_tmp"; fi
}
trap cleanup EXIT
stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# the check itself; DEVICE=cuda|cpu, PRESET, BENCH_*, SWEEP_* set by the caller
check() {
    local mode=$1
    mkdir -p "$OUTD"
    local voices="$TMPD/voices"

    begin probe "CUDA libraries for onnxruntime ($DEVICE)"
    rm -f "$OUTD/cuda-probe.json"
    if [[ "$DEVICE" == cuda ]]; then
        if ! bounded 60 "$PY" recipes/gpu_check.py probe --out "$OUTD/cuda-probe.json" --attempt preload_dlls --want-cuda; then
            local libdirs
            libdirs=$("$PY" recipes/gpu_check.py nvidia-lib-dirs)
            if LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" bounded 60 \
                "$PY" recipes/gpu_check.py probe --out "$OUTD/cuda-probe.json" --attempt ld_library_path --want-cuda; then
                export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
            else
                bounded 60 "$PY" recipes/gpu_check.py probe --out "$OUTD/cuda-probe.json" --attempt import_torch --want-cuda ||
                    echo "gpu-check: onnxruntime runs nothing on CUDA here (cuda-probe.json); the steps go on, the verify will fail" >&2
            fi
        fi
    else
        bounded 60 "$PY" recipes/gpu_check.py probe --out "$OUTD/cuda-probe.json" --attempt preload_dlls ||
            die "the probe failed on the CPU"
    fi
    done_ probe

    begin export "voice bundle ($PRESET preset, fp32 + fp16 student)"
    if [[ -f "$TMPD/export.started" ]]; then # started by `stage`: wait for it to end
        while [[ ! -f "$TMPD/export.rc" ]] && (($(left) > 200)); do sleep 1; done
        [[ -f "$TMPD/export.rc" ]] || echo "gpu-check: the background export is not done; exporting again" >&2
    fi
    if [[ ! -f "$voices/gpu-check/voice.json" || ! -f "$TMPD/export.rc" || "$(cat "$TMPD/export.rc")" != 0 ]]; then
        # shellcheck disable=SC2046  # export_args prints plain words
        bounded 240 "$PY" $(export_args "$voices" "$PRESET") >"$TMPD/export.log" 2>&1 ||
            { cp "$TMPD/export.log" "$OUTD/" 2>/dev/null || true; die "the export failed (export.log)"; }
    fi
    cp "$TMPD/export.log" "$OUTD/export.log"
    cp "$voices/gpu-check/voice.json" "$OUTD/voice.json"
    done_ export

    begin bench "parawave bench --device $DEVICE, ${BENCH_SECONDS} s utterance, batches $BENCH_BATCHES"
    bounded 200 "$PY" -m service.cli bench --voices-dir "$voices" --device "$DEVICE" --student-seconds "$BENCH_SECONDS" \
        --batch "$BENCH_BATCHES" --runs "$BENCH_RUNS" --teacher-seconds 0 --json >"$OUTD/bench.json" 2>"$OUTD/bench.log" ||
        echo "gpu-check: bench failed or ran out of time (bench.log)" >&2
    cat "$OUTD/bench.log" "$OUTD/bench.json" 2>/dev/null || true
    done_ bench

    begin serve "parawave serve --device $DEVICE"
    local port
    port=$(free_port)
    local require=--no-require-cuda
    [[ "$DEVICE" == cuda ]] && require=--require-cuda
    PARAWAVE_LOG_LEVEL=warning "$PY" -m service.cli serve --voices-dir "$voices" --device "$DEVICE" $require \
        --host 127.0.0.1 --port "$port" >"$OUTD/serve.log" 2>&1 &
    server_pid=$!
    local ready=0
    for _ in $(seq 1 $((2 * 90))); do
        kill -0 "$server_pid" 2>/dev/null || break
        if "$PY" -c "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:$port/health/ready', timeout=2).status != 200)" 2>/dev/null; then
            ready=1
            break
        fi
        sleep 0.5
    done
    ((ready)) || { stop_server; tail -5 "$OUTD/serve.log" >&2; die "the server did not get ready (serve.log)"; }
    done_ serve

    begin sweep "concurrency $SWEEP_LEVELS, ${SWEEP_DURATION} s each, until TTFA p95 > 250 ms"
    bounded 240 "$PY" -m service.loadtest.sweep --url "http://127.0.0.1:$port" --concurrency "$SWEEP_LEVELS" \
        --duration "$SWEEP_DURATION" --warmup "$SWEEP_WARMUP" --stop-when-ttfa-p95-ms 250 \
        --out "$OUTD/sweep" 2>&1 | tail -n 25 ||
        echo "gpu-check: the sweep failed or ran out of time" >&2
    rm -f "$OUTD/sweep/requests.jsonl" # one line per request: large, and nothing the summary needs
    stop_server
    done_ sweep

    STEP_S[total]=$SECONDS
    write_env "$mode"
    "$PY" recipes/gpu_check.py summary "$OUTD" || echo "gpu-check: summary incomplete" >&2
    local flag=() rc=0
    [[ "$mode" == dry-run ]] && flag=(--dry-run)
    "$PY" recipes/gpu_check.py verify "$OUTD" "${flag[@]}" || rc=$?
    if [[ "$mode" == gpu ]]; then # the device returns 8 files at most: the rest travel as one archive
        local extra=() f
        for f in export.log bench.log serve.log voice.json sweep/report.png; do [[ -f "$OUTD/$f" ]] && extra+=("$f"); done
        if ((${#extra[@]})); then
            tar -czf "$OUTD/extras.tar.gz" -C "$OUTD" "${extra[@]}" && (cd "$OUTD" && rm -f "${extra[@]}")
        fi
        echo "gpu-check: reports in $OUTD: $(cd "$OUTD" && find . -type f | sort | tr '\n' ' ')"
    fi
    return "$rc"
}

# ------------------------------------------------------------------------------------ commands

cmd="${1:-}"
[[ -n "$cmd" ]] || die "usage: recipes/gpu-check.sh prepare | stage | run --out DIR | --dry-run --out DIR"
shift
OUTD=""
while (($#)); do
    case "$1" in
    --out) OUTD="${2:?--out needs a folder}"; shift 2 ;;
    *) die "unknown argument $1" ;;
    esac
done

export PYTHONUNBUFFERED=1
case "$cmd" in
prepare)
    prepare
    ;;
stage) # device, call 1
    [[ -f "$CARRY/a/ort.part1" ]] || die "$CARRY/a/ort.part1 is not here: carry .gpucheck/a (run prepare first)"
    mkdir -p "$TMPD"
    SECONDS=0
    cp "$CARRY/a/ort.part1" "$TMPD/ort.part1"
    cp "$CARRY/a/ort-slim.json" "$TMPD/"
    install_wheels "$CARRY/a/whl"
    export PYTHONPATH="$TMPD/site:$root"
    rm -rf "$TMPD/voices" "$TMPD/export.rc"
    # detached (its own session), so it outlives this call and runs while call 2 is on its way
    # shellcheck disable=SC2046
    setsid bash -c '"$@" >"$0/export.log" 2>&1; echo $? >"$0/export.rc"' "$TMPD" "$PY" $(export_args "$TMPD/voices" gpu) \
        </dev/null >/dev/null 2>&1 &
    touch "$TMPD/export.started"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
    echo "gpu-check: stage done in ${SECONDS} s (part 1 $(mib "$(stat -c %s "$TMPD/ort.part1")"), wheels in $TMPD/site, export started); make call 2 now"
    ;;
run) # device, call 2
    [[ -n "$OUTD" ]] || die "run needs --out DIR"
    [[ -f "$TMPD/ort.part1" ]] || die "$TMPD/ort.part1 is not on this machine (it went back after call 1): make call 1 again, then call 2 at once"
    [[ -f "$CARRY/b/ort.part2" ]] || die "$CARRY/b/ort.part2 is not here: carry .gpucheck/b"
    DEADLINE=${DEADLINE_S:-420}
    SECONDS=0
    DEVICE=cuda PRESET=gpu BENCH_SECONDS=10 BENCH_RUNS=5 BENCH_BATCHES="${GPU_CHECK_BATCHES:-1,2,4,8,16,32,64}"
    SWEEP_LEVELS="${GPU_CHECK_CONCURRENCY:-1,2,4,8,16,32,64,128,256}" SWEEP_DURATION=8 SWEEP_WARMUP=1
    export DEVICE
    begin install "onnxruntime-gpu from its parts, the wheels"
    want=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))["archive_sha256"])' "$CARRY/b/ort-slim.json")
    cat "$TMPD/ort.part1" "$CARRY/b/ort.part2" >"$TMPD/ort-slim.tar.xz"
    echo "$want  $TMPD/ort-slim.tar.xz" | sha256sum -c --quiet ||
        die "onnxruntime archive corrupt (part 1 from another prepare?): prepare again, then both calls"
    rm -rf "$TMPD/ort" && mkdir -p "$TMPD/ort" && tar -xJf "$TMPD/ort-slim.tar.xz" -C "$TMPD/ort"
    [[ -d "$TMPD/site/pydantic" ]] || die "the wheels are not installed ($TMPD/site): make call 1 again"
    export PYTHONPATH="$TMPD/ort:$TMPD/site:$root"
    "$PY" -c 'import onnxruntime as o; print("gpu-check: onnxruntime", o.__version__, o.__file__, o.get_available_providers())'
    done_ install
    check gpu
    ;;
--dry-run) # here and in CI: CPU provider, tiny sizes, a short sweep
    [[ -n "$OUTD" ]] || die "--dry-run needs --out DIR"
    TMPD=$(mktemp -d "${TMPDIR:-/tmp}/gpucheck-dry.XXXXXX")
    dry_tmp=$TMPD
    DEADLINE=${DEADLINE_S:-300}
    SECONDS=0
    DEVICE=cpu PRESET=tiny BENCH_SECONDS=1 BENCH_RUNS=1 BENCH_BATCHES=1,2
    SWEEP_LEVELS=1,2 SWEEP_DURATION=1 SWEEP_WARMUP=0.2
    export DEVICE
    begin install "nothing to install (dry run: this environment's packages)"
    export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    done_ install
    check dry-run
    ;;
*)
    die "unknown command $cmd (prepare | stage | run --out DIR | --dry-run --out DIR)"
    ;;
esac
