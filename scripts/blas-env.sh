# The one place that picks OPENBLAS_CORETYPE: sourced by the scripts, and
# run by CMake at configure time for the tests' environment. OpenBLAS 0.3.21 (Debian 12) does not recognise some
# virtualized Xeons and falls back to its slowest (Prescott) kernels, 5-7x
# slower GEMMs. Pick the kernel set from the CPU's own flags unless the user
# already chose one.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
  if grep -qw avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=SkylakeX
  elif grep -qw avx2 /proc/cpuinfo; then export OPENBLAS_CORETYPE=Haswell
  fi
fi
