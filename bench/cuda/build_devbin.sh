#!/bin/bash
# Build the fallback binary that bench/cuda/run_all.sh uses when the GPU
# machine cannot build the project (its image lacks the libdeflate, OpenBLAS
# and LAPACKE development files). Run on the dev machine (same nvcc 13.0);
# libdeflate, OpenBLAS and LAPACKE are linked statically, libgfortran and
# libquadmath travel in .devbin/lib. Carry .devbin with the device call.
set -e
B=${B:-/tmp/kvtc-devbin-build}
cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVTC_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null
cmake --build "$B" --target kvtc_cuda_bench
mkdir -p .devbin/lib
L=/usr/lib/x86_64-linux-gnu
CU=/usr/local/cuda
g++ "$B"/CMakeFiles/kvtc_cuda_bench.dir/bench/cuda/bench_cuda.cu.o "$B"/CMakeFiles/kvtc_cuda_bench.dir/bench/cuda/bench_synth.c.o \
  -o .devbin/kvtc_cuda_bench "$B"/libkvtc_cuda.a "$B"/libkvtc.a $L/libdeflate.a $L/liblapacke.a \
  $L/openblas-pthread/libopenblas.a -lgfortran -lm $CU/lib/libcudart.so $CU/lib/libcublas.so $CU/lib/libcublasLt.so \
  $CU/lib/libculibos.a -lcudadevrt -lcudart_static -lrt -lpthread -ldl \
  -L$CU/targets/x86_64-linux/lib/stubs -L$CU/targets/x86_64-linux/lib
strip .devbin/kvtc_cuda_bench
cp -L $L/libgfortran.so.5 $L/libquadmath.so.0 .devbin/lib/
ls -la .devbin/kvtc_cuda_bench
# the GPU calibration check/benchmark (bench/cuda/run_calib.sh)
cmake --build "$B" --target kvtc_cuda_calib_bench
g++ "$B"/CMakeFiles/kvtc_cuda_calib_bench.dir/bench/cuda/bench_calib.cu.o "$B"/CMakeFiles/kvtc_cuda_calib_bench.dir/bench/cuda/bench_synth.c.o \
  -o .devbin/kvtc_cuda_calib_bench "$B"/libkvtc_cuda.a "$B"/libkvtc.a $L/libdeflate.a $L/liblapacke.a \
  $L/openblas-pthread/libopenblas.a -lgfortran -lm $CU/lib/libcudart.so $CU/lib/libcublas.so $CU/lib/libcublasLt.so \
  $CU/lib/libcusolver.so $CU/lib/libculibos.a -lcudadevrt -lcudart_static -lrt -lpthread -ldl \
  -L$CU/targets/x86_64-linux/lib/stubs -L$CU/targets/x86_64-linux/lib
strip .devbin/kvtc_cuda_calib_bench
ls -la .devbin/kvtc_cuda_calib_bench
