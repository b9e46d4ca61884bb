# Sourced on the GPU machine: unpack the bundle made by scripts/gpu_bundle.sh
# (carried in .devbin/) and point KVTC_GPU_BIN, LD_LIBRARY_PATH and the
# Python binding (KVTC_LIB, KVTC_CUDA_LIB) at it.
if [ ! -f .devbin/bundle.tar.xz ]; then
  echo "no .devbin/bundle.tar.xz: run scripts/build.sh && scripts/gpu_bundle.sh here, carry .devbin" >&2
  return 1 2>/dev/null || exit 1
fi
rm -rf /tmp/kvtc-gpu && tar xJf .devbin/bundle.tar.xz -C /tmp
export KVTC_GPU_BIN=/tmp/kvtc-gpu/bin
export LD_LIBRARY_PATH=/tmp/kvtc-gpu/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
export KVTC_LIB=/tmp/kvtc-gpu/lib/libkvtc.so.0 KVTC_CUDA_LIB=/tmp/kvtc-gpu/lib/libkvtc_cuda.so.0
export KVTC_GPU_CLI=/tmp/kvtc-gpu/bin/kvtc-gpu  # tests/cuda/test_cuda_eval.c
