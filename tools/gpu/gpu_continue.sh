#!/usr/bin/env bash
# Continue the shipped models' training (training/speech-spectral-norm, training/music-spectral-norm) on a GPU machine,
# which has torch + triton but no network and none of our audio dependencies.
#
#   bash tools/gpu/gpu_continue.sh prepare      # here, with PyPI and `opgan fetch`'s cache: writes the
#                                              # carried folders .gpu (sources and the Triton cache pack,
#                                              # with the tree <= 64 MiB) and .whl/
#   bash tools/gpu/gpu_continue.sh run          # there (device tool: carry .gpu and .whl): trains each
#                                              # model for $MINUTES (default 4), state -> $OUT/<run>.tgz
#                                              # (CUDA_GRAPH=1: with train.py --cuda-graph)
#   for f in <files_at>/*.tgz; do tar xzf "$f"; done   # here: take the states back (they unpack
#                                              # into training/), check them (opgan gate score ...), commit
#
# `run` installs the carried wheels into /tmp/site and the project without dependencies, copies
# training/ to a work folder and resumes each run there with the fused kernels; after each model it
# compacts its last.pt (`python -m opgan.checkpoint compact`: the committed states are kept that way,
# so the tree stays under 64 MiB) and packs the run into $OUT/<run>.tgz, so whatever the time limit
# cuts off, the finished models' states are already under $OUT. DEVICE=cpu
# runs the same on a CPU (that is how it is tested).
#
# The fused kernels' variants both runs compile before their first step and at their first
# validation (~300, minutes of a GPU machine's time) are compiled here for its sm_90 and Triton 3.6 by
# `tools/gpu/prewarm_cache.py --training` into .gpu/triton-cache.tar.xz, counted in the 64 MiB; `run`
# unpacks it (triton_pack.unpack: Triton's entries name their files by absolute path) and points
# TRITON_CACHE_DIR at it. TRITON_PACK=0 prepare: no new compile (an earlier prepare's pack, if any,
# is kept). Without PyPI (no Triton 3.6 wheel) prepare says so and goes on without it.
set -euo pipefail
cd "$(dirname "$0")/../.."
cmd=${1:-}
runs="speech-spectral-norm music-spectral-norm"  # the runs the shipped weights come from (docs/training.md), under training/
case "$cmd" in
prepare)
    cache=${OPGAN_CACHE:-$HOME/.cache/opgan}
    [ -d "$cache/speech" ] || { echo "gpu_continue: no sources in $cache; run 'opgan fetch' first" >&2; exit 2; }
    mkdir -p .whl
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl soundfile cffi pycparser pystoi
    mkdir -p .gpu
    rm -rf .gpu/triton-cache  # only its .tar.xz travels
    if [ "${TRITON_PACK:-1}" != 0 ]; then
        rm -f .gpu/triton-cache.tar.xz
        log=$(mktemp)
        python tools/gpu/prewarm_cache.py --training "$(printf 'training/%s,' $runs | sed 's/,$//')" --training-data "$cache" \
            --out .gpu/triton-cache --pack >"$log" 2>&1 || true
        if [ -f .gpu/triton-cache.tar.xz ]; then
            tail -n 1 "$log"
        else
            echo "gpu_continue: no Triton cache pack ($(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-300));" \
                "the GPU compiles its kernels itself"
        fi
        rm -rf .gpu/triton-cache "$log"
    fi
    # Everything that travels (tracked and untracked-not-ignored files plus what is carried) must stay
    # under the device tool's 64 MiB: the pack gets what the tree, the wheels and the Triton cache pack
    # leave, less 1 MiB.
    sizes=$(python3 -c 'import sys; sys.path.insert(0, "tools/gpu"); from pathlib import Path; import triton_pack as p
print(p.tree_bytes(Path(".")), p.path_bytes(Path(".whl")), p.path_bytes(Path(".gpu/triton-cache.tar.xz")),
      int(p.TRAVEL_MIB * 2**20))')
    read -r tree whl tri limit <<< "$sizes"
    budget=$(( limit - tree - whl - tri - 1048576 ))
    scale=1
    for attempt in 1 2 3 4; do
        rm -rf .gpu/sources
        python -m opgan.data.pack --cache "$cache" --out .gpu/sources --speech-s "$(awk "BEGIN {print 90 * $scale}")" \
            --music-s "$(awk "BEGIN {print 25 * $scale}")" --background-s "$(awk "BEGIN {print 20 * $scale}")"
        size=$(du -sb .gpu/sources | cut -f1)
        [ "$size" -le "$budget" ] && break
        scale=$(awk "BEGIN {print $scale * $budget / $size * 0.95}")  # Vorbis size ~ duration
    done
    if [ "$size" -gt "$budget" ]; then
        echo "gpu_continue: the pack ($size B) does not fit the $budget B the tree, the wheels and the Triton" \
            "cache pack leave under 64 MiB" >&2
        exit 1
    fi
    mib() { awk "BEGIN {printf \"%.1f\", $1 / 1048576}"; }
    echo "gpu_continue: tree $(mib "$tree") MiB + pack $(mib "$size") MiB (durations x$scale) + Triton cache" \
        "$(mib "$tri") MiB + wheels $(mib "$whl") MiB travel: carry .gpu and .whl"
    ;;
run)
    out=${OUT:-./gpu-out}
    minutes=${MINUTES:-4}
    device=${DEVICE:-cuda}
    if [ "$device" = cuda ]; then backend=triton; else backend=torch; fi
    # CUDA_GRAPH=1: the step replayed from one CUDA graph (train.py --cuda-graph), once the round's
    # CUDA tests have passed test_cuda_graph_on_the_gpu_matches_eager on that machine
    if [ "${CUDA_GRAPH:-0}" = 1 ]; then graph=--cuda-graph; else graph=--no-cuda-graph; fi
    if ls .whl/*.whl >/dev/null 2>&1 && ! python3 -c "import soundfile" 2>/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    python3 -c "import opgan.trainer" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
    work=${WORK:-/tmp/gpu-continue}
    rm -rf "$work" && mkdir -p "$work/training" "$out"
    for name in $runs; do cp -r "training/$name" "$work/training/"; done
    if [ -f .gpu/triton-cache.tar.xz ]; then  # prepare's kernels, compiled for this GPU
        TRITON_CACHE_DIR=$(python3 -c 'import sys; sys.path.insert(0, "tools/gpu"); from triton_pack import unpack
print(unpack(*sys.argv[1:]))' .gpu/triton-cache.tar.xz "$work")
        export TRITON_CACHE_DIR
        echo "gpu_continue: Triton cache $TRITON_CACHE_DIR ($(find "$TRITON_CACHE_DIR" -name '*.cubin' | wc -l) cubins)"
    fi
    for name in $runs; do
        step=$(python3 -c "import torch; print(torch.load('$work/training/$name/last.pt', weights_only=True)['step'])")
        python3 train.py --runs-dir "$work/training" --name "$name" --resume --data .gpu/sources --rirs "" \
            --device "$device" --backend "$backend" --threads 0 --workers 4 --max-steps $((step + ${MAX_STEPS:-1000000})) \
            --max-minutes "$minutes" --no-progress "$graph" 2>&1 | tee "$work/training/$name.log"
        # one file per model, its Adam state compacted: the device tool returns files of up to 16 MiB
        python3 -m opgan.checkpoint compact "$work/training/$name/last.pt"
        tar czf "$out/$name.tgz.tmp" -C "$work" "training/$name" "training/$name.log" && mv "$out/$name.tgz.tmp" "$out/$name.tgz"
    done
    ;;
*)
    echo "usage: bash tools/gpu/gpu_continue.sh prepare|run   (see the comments at the top)" >&2
    exit 2
    ;;
esac
