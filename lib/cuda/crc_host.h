/* crc_host.h - a synchronous C entry to the device CRC-32 kernels (crc.cu),
 * for the GPU tests and benchmarks: the same piece kernels and combine the
 * codec runs on chunks, with its own tables and scratch. */
#ifndef KVTC_CUDA_CRC_HOST_H
#define KVTC_CUDA_CRC_HOST_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CRC-32 (zlib's) of the n device regions d_data + off[i], size[i] bytes
 * (off, size: host arrays; any alignment) into crc[i] (host). Allocates
 * and synchronizes on the default stream. Returns 0 or the cudaError_t of
 * the first failing call. */
int kvi_cuda_crc32_chunks(const void *d_data, const uint64_t *off, const uint32_t *size, uint32_t n, uint32_t *crc);

#ifdef __cplusplus
}
#endif

#endif
