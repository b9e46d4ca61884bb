// header.cuh - the stream's header and section table, written on the
// device once the chunk data size and the section CRCs are known there.
#ifndef KVTC_CUDA_HEADER_CUH
#define KVTC_CUDA_HEADER_CUH

#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "format/container.h"
}

// h: everything but the chunk data size, total size and CRCs. sec_crc: the
// CRCs of positions, token ids, raw K, raw V, chunk index (device).
// *written (device) receives the total size.
void launch_write_prefix(const container_header &h, const uint64_t *data_size, const uint32_t *sec_crc,
                         const uint32_t *crc_table, uint8_t *out, uint64_t *written, cudaStream_t st);

// Copy the plan section d_section[0..n) (device) to out + data_off +
// *data_size: right after the chunk data, whose size only the device knows.
void launch_write_plan_section(const uint8_t *d_section, uint64_t n, uint64_t data_off, const uint64_t *data_size,
                               uint8_t *out, cudaStream_t st);

#endif
