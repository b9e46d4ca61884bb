// device_guard.h - run a CUDA entry point on a chosen device and give the
// caller's current device back on every return path (issue 9: codec_alloc
// used to cudaSetDevice and leave it set). C++ (nvcc) only.
#ifndef KVTC_CUDA_DEVICE_GUARD_H
#define KVTC_CUDA_DEVICE_GUARD_H

#include <cuda_runtime.h>

struct DeviceGuard {
    int prev = -1;
    bool switched = false;
    bool ok = true;  // false: the device could not be selected
    explicit DeviceGuard(int device) {
        if (device < 0) return;
        if (cudaGetDevice(&prev) != cudaSuccess) prev = -1;
        if (prev == device) return;
        ok = cudaSetDevice(device) == cudaSuccess;
        switched = ok && prev >= 0;
    }
    ~DeviceGuard() {
        if (switched) cudaSetDevice(prev);
    }
    DeviceGuard(const DeviceGuard &) = delete;
    DeviceGuard &operator=(const DeviceGuard &) = delete;
};

#endif
