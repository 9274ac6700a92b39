# Sourced by the GPU scripts: makes migm_shortcut importable on a bare GPU machine (its Python has
# torch, transformers and the rest; diffusers and importlib_metadata come as wheels in .whl, see
# scripts/gpu_check.sh) and sets PY to the interpreter to use. It also reads the scripts' shared
# arguments: `source scripts/gpu_env.sh NAME "$@"` sets DEVICE (--device, default cuda) and QUICK.
GPU_SCRIPT=$1
shift
DEVICE=cuda
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    *) echo "$GPU_SCRIPT: unknown argument $1 (use --device cuda|cpu and --quick)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ "$DEVICE" = cpu ] && [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
export PYTHONUNBUFFERED=1
# Run from the repo root, Python would import the source folder migm_shortcut/ (cwd comes first on
# sys.path), which lacks the subpackages that pyproject.toml maps in (samplers/, train/, eval/). Safe
# paths (Python >= 3.11) keep cwd and the script's folder off sys.path, so the installed package is the
# one imported; scripts/ goes on PYTHONPATH for the scripts that import each other.
export PYTHONSAFEPATH=1
if ! "$PY" -c "import migm_shortcut.samplers" 2>/dev/null; then
  SITE=/tmp/migm_site
  if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target "$SITE" .
  export PYTHONPATH=$SITE
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/scripts
