#!/usr/bin/env bash
# The GPU check in one command, for a node with CUDA torch and perhaps no package index.
#
#   tools/gpu-check.sh [--wheelhouse DIR] [--out DIR] [--cpu]     (default --out gpu-check/)
#
# 1. Dependencies: with --wheelhouse (made beforehand by tools/wheelhouse.sh), installs the
#    project's dependencies into the environment of $PYTHON (default python3: the one holding
#    CUDA torch) with pip --no-index; what is there already, torch first, stays. Without it,
#    stops if one is missing, naming them. The project itself runs from this checkout.
# 2. CUDA: without a visible CUDA device it says so, writes OUT/summary.json saying so and
#    exits 3, before anything runs: nothing here is meaningful on a CPU. --cpu rehearses the
#    script there instead: every phase, with the "CUDA" study and the parity check on the
#    CPU (the bench says it skipped its CUDA part); its figures mean nothing, its plumbing is
#    what it checks.
# 3. In under 8 minutes, each phase under its own time limit (a failed phase is recorded,
#    the next still runs): the test study end to end through snakemake with
#    train.device: cuda, beside the same study on the CPU -> study-cuda/, study-cpu/; an
#    export parity check of a CUDA-trained cell in fp32 and bf16 -> parity.json;
#    `skillscale speed gpu` (MFU at 3 sizes up to 110M parameters, packed small cells vs
#    one per GPU) -> bench.json.
# 4. OUT/summary.json: the figures of all phases (skillscale.tools.gpu_check), printed as a
#    table too. Exit 0 when every phase passed.
#
# Settings: the phases' time limits GPU_CHECK_BENCH_S (210 s), GPU_CHECK_STUDY_S (180 s),
# GPU_CHECK_PARITY_S (45 s): 7 min 15 s at most, plus the install and the summary;
# GPU_CHECK_BENCH_ARGS ("--sizes 3 --steps 10 --warmup-steps 3 --pack-steps 150"); the
# studies' snakemake --cores GPU_CHECK_CORES (8, the CUDA study) and GPU_CHECK_CPU_CORES (4).
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=gpu-check wheelhouse='' device=cuda
while [ $# -gt 0 ]; do
    case $1 in
    --wheelhouse) wheelhouse=$(cd "$2" && pwd) && shift 2 || exit 2 ;;
    --out) out=$2 && shift 2 ;;
    --cpu) device=cpu && shift ;;
    *) echo "usage: $0 [--wheelhouse DIR] [--out DIR] [--cpu]" >&2 && exit 2 ;;
    esac
done
mkdir -p "$out" && out=$(cd "$out" && pwd)
py=$(command -v "${PYTHON:-python3}") || { echo "gpu-check: no ${PYTHON:-python3} on PATH" >&2 && exit 2; }

# the rules run `python -m skillscale...`: `python` must be this interpreter, and the project
# this checkout (a wrapper, not a link: a venv's python is found by the path it is run by)
mkdir -p "$out/bin"
printf '#!/bin/sh\nexec %s "$@"\n' "$py" >"$out/bin/python"
chmod +x "$out/bin/python"
cp "$out/bin/python" "$out/bin/python3"
export PATH="$out/bin:$PATH" PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 # an offline node: never wait on the hub

# -- 1. dependencies ------------------------------------------------------------------------
missing() { # the project's dependencies (and the hf extra, for the parity check) not installed here
    python - "$repo/pyproject.toml" <<'EOF'
import re, sys, tomllib
from importlib.metadata import PackageNotFoundError, version
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
for req in project["dependencies"] + project["optional-dependencies"]["hf"]:
    try:
        version(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])
    except PackageNotFoundError:
        print(req)
EOF
}
if [ -n "$wheelhouse" ]; then
    echo "gpu-check: installing what is missing from $wheelhouse (no index)"
    t0=$SECONDS
    python -m pip install --quiet --no-index --find-links "$wheelhouse" -r "$wheelhouse/requirements.txt" || exit 2
    echo "gpu-check: installed in $((SECONDS - t0)) s"
fi
lacking=$(missing) || exit 2
if [ -n "$lacking" ]; then
    echo "gpu-check: $py lacks: $(echo "$lacking" | paste -sd, -)" >&2
    echo "  make a wheelhouse on a machine with internet (tools/wheelhouse.sh; docs/cluster.md) and pass --wheelhouse" >&2
    exit 2
fi
echo "gpu-check: dependencies: all present ($py)"

# -- 2. CUDA --------------------------------------------------------------------------------
python - "$out/environment.json" <<'EOF' || exit 2
import json, platform, sys, torch
env = {"python": platform.python_version(), "torch": torch.__version__, "cuda_build": torch.version.cuda,
       "cuda": torch.cuda.is_available()}
if env["cuda"]:
    env |= {"gpu": torch.cuda.get_device_name(0), "gpus": torch.cuda.device_count()}
json.dump(env, open(sys.argv[1], "w"))
EOF
if [ $device = cuda ] && ! grep -q '"cuda": true' "$out/environment.json"; then
    echo '{"ok": false, "cuda": false, "why": "no CUDA device visible", "environment": '"$(cat "$out/environment.json")"'}' \
        >"$out/summary.json"
    echo "gpu-check: no CUDA device is visible to torch here ($(cat "$out/environment.json")); nothing was run." >&2
    echo "  Run this on a GPU node (--cpu rehearses the script on this machine)." >&2
    exit 3
fi

# -- 3. the phases --------------------------------------------------------------------------
: >"$out/phases.tsv"
phase() { # NAME SECONDS COMMAND: run it (a bash command line) under a time limit, log to OUT/NAME.log
    local name=$1 limit=$2 t0 rc ms
    echo "gpu-check: $name (at most ${limit} s)"
    t0=$(date +%s%N)
    timeout -s KILL "$limit" bash -c "$3" >"$out/$name.log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    printf '%s\t%s\t%d.%03d\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) >>"$out/phases.tsv"
    [ $rc -eq 0 ] || echo "gpu-check: $name failed ($rc); see $out/$name.log" >&2
}
# shellcheck disable=SC2329 # run by phase, through bash -c
study() { # DIR DEVICE CORES: the test study in a scratch copy of the workflow
    rm -rf "$1" && mkdir -p "$1"
    cp -r "$repo/Snakefile" "$repo/workflow" "$repo/config" "$repo/profiles" "$repo/envs" "$1/"
    printf 'train: {device: %s}\n' "$2" >"$1/device.yaml"
    cd "$1" && python -m snakemake --cores "$3" --configfile config/studies/test.yaml device.yaml
}
export -f study
export repo out

cd "$repo" || exit 2
# the same study on CPUs only (its evaluation too), beside the CUDA one, for the comparison
CUDA_VISIBLE_DEVICES='' phase study-cpu "${GPU_CHECK_STUDY_S:-180}" "study '$out/study-cpu' cpu ${GPU_CHECK_CPU_CORES:-4}" &
phase study-cuda "${GPU_CHECK_STUDY_S:-180}" "study '$out/study-cuda' $device ${GPU_CHECK_CORES:-8}"
wait
# the largest model the CUDA study trained (its layers' loop and widest shapes exported)
cell=$(find "$out/study-cuda/results/test/cells" -name model.safetensors -printf '%s %h\n' 2>/dev/null | sort -n | tail -1)
cell=${cell#* }
phase parity "${GPU_CHECK_PARITY_S:-45}" "python -m skillscale.tools.gpu_check parity '$cell' '$out/parity.json' --device $device"
# last, with what is left of the 8 minutes: each shape compiles afresh, so 3 of the 6
phase bench "${GPU_CHECK_BENCH_S:-210}" "python -m skillscale speed gpu --json \
    ${GPU_CHECK_BENCH_ARGS:---sizes 3 --steps 10 --warmup-steps 3 --pack-steps 150} >'$out/bench.json'"

# -- 4. the summary -------------------------------------------------------------------------
python -m skillscale.tools.gpu_check summary "$out"
rc=$?
echo "gpu-check: $out/summary.json"
exit $rc
