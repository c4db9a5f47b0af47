# Sourced by the GPU scripts (gpu_check.sh, gpu_train_prior.sh) with OUT and DEADLINE set: logs
# to $OUT/log.txt, installs the wheels carried in .whl/ and gscodec (editable, no dependencies;
# SKIP_INSTALL=1 skips that), prints the machine, and compiles gsplat's CUDA kernels once
# (gscodec.render.gsplat_available). Defines say (a line with the seconds so far), left
# (seconds left before DEADLINE) and GS (the gscodec CLI).
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
START=$SECONDS
say() { echo "[$((SECONDS - START)) s] $*"; }
left() { echo $((DEADLINE - (SECONDS - START))); }

say "install"
[ "${SKIP_INSTALL:-0}" = 1 ] || {
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . || exit 1
}
GS=(python3 -c 'import sys; from gscodec.cli.main import main; sys.argv[0] = "gscodec"; main()')
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c "import torch, gsplat; print('torch', torch.__version__, 'cuda', torch.version.cuda,
    'gpu', torch.cuda.get_device_name(), 'gsplat', gsplat.__version__)"
nvcc --version | tail -1
nproc

say "compile gsplat (MAX_JOBS=${MAX_JOBS:=$(nproc)})"
export MAX_JOBS
timeout 360 python3 -W always -c "
import time
t = time.time()
from gscodec.render import gsplat_available
ok = gsplat_available()
print(f'gsplat renders: {ok} ({time.time() - t:.0f} s, compile included)')
raise SystemExit(0 if ok else 3)
"
say "gsplat rc=$?"

