// header.cu - the container prefix written on the device (header.cuh).
#include "cuda/common.cuh"
#include "cuda/header.cuh"

struct HdrArgs {
    container_header h;  // everything but chunk data size, total size and CRCs
    int n_sec;           // sections in the table (SEC_COUNT, + the plan section)
};

static __device__ uint32_t crc_bytes(const uint32_t *table, const uint8_t *p, uint64_t n) {
    uint32_t c = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return ~c;
}

__global__ void prefix_k(HdrArgs a, const uint64_t *data_size, const uint32_t *sec_crc, const uint32_t *table,
                         uint8_t *out, uint64_t *written) {
    if (threadIdx.x || blockIdx.x) return;
    container_header h = a.h;
    h.sections[SEC_CHUNK_DATA].size = *data_size;
    h.total_size = h.sections[SEC_CHUNK_DATA].offset + *data_size;
    if (a.n_sec > SEC_PLAN) {  // the plan section follows the chunk data (its CRC is the host's)
        h.sections[SEC_PLAN].offset = h.total_size;
        h.total_size += h.sections[SEC_PLAN].size;
    }
    // sec_crc: positions, token ids (unused: 0-size), raw K, raw V, index
    h.sections[SEC_POSITIONS].crc32 = sec_crc[0];
    h.sections[SEC_TOKEN_IDS].crc32 = sec_crc[1];
    h.sections[SEC_RAW_K].crc32 = sec_crc[2];
    h.sections[SEC_RAW_V].crc32 = sec_crc[3];
    h.sections[SEC_CHUNK_INDEX].crc32 = sec_crc[4];
    h.sections[SEC_CHUNK_DATA].crc32 = 0;
    for (int i = 0; i < (int)(CONTAINER_HEADER_SIZE + a.n_sec * CONTAINER_SECTION_ENTRY); i++) out[i] = 0;
    const uint8_t magic[8] = {0x89, 'K', 'V', 'T', 'C', '\r', '\n', 0x1a};
    for (int i = 0; i < 8; i++) out[i] = magic[i];
    st_u16(out + 8, h.version_major);
    st_u16(out + 10, h.version_minor);
    st_u32(out + 12, CONTAINER_HEADER_SIZE);
    st_u32(out + 16, h.flags);
    st_u32(out + 20, h.geometry.n_layers);
    st_u32(out + 24, h.geometry.n_kv_heads);
    st_u32(out + 28, h.geometry.head_dim);
    st_u32(out + 32, h.geometry.rope_dim);
    out[36] = (uint8_t)h.geometry.rope_type;
    out[37] = (uint8_t)h.dtype;
    out[38] = h.codec;
    out[39] = h.rope_removed;
    st_u32(out + 40, __float_as_uint(h.geometry.rope_theta));
    st_u32(out + 44, h.recompute_layers);
    st_u64(out + 48, h.n_tokens);
    st_u32(out + 56, h.n_sink);
    st_u32(out + 60, h.n_window);
    st_u32(out + 64, h.chunk_tokens);
    st_u32(out + 68, h.n_chunks);
    st_u64(out + 72, h.transform_fingerprint);
    st_u64(out + 80, h.plan_fingerprint);
    st_u64(out + 88, (uint64_t)__double_as_longlong(h.plan_ratio));
    st_u64(out + 96, h.total_size);
    st_u32(out + 104, (uint32_t)a.n_sec);
    if (h.flags & CONTAINER_FLAG_MODEL_FINGERPRINT) st_u64(out + 112, h.model_fingerprint);
    uint8_t *tab = out + CONTAINER_HEADER_SIZE;
    for (int s = 0; s < a.n_sec; s++) {
        uint8_t *e = tab + s * CONTAINER_SECTION_ENTRY;
        st_u64(e, h.sections[s].offset);
        st_u64(e + 8, h.sections[s].size);
        st_u32(e + 16, h.sections[s].crc32);
    }
    st_u32(out + 108, crc_bytes(table, tab, (uint64_t)a.n_sec * CONTAINER_SECTION_ENTRY));
    st_u32(out + 124, crc_bytes(table, out, 124));
    *written = h.total_size;
}

void launch_write_prefix(const container_header &h, const uint64_t *data_size, const uint32_t *sec_crc,
                         const uint32_t *crc_table, uint8_t *out, uint64_t *written, cudaStream_t st) {
    HdrArgs ha;
    ha.h = h;
    ha.n_sec = container_n_sections(&h);
    prefix_k<<<1, 1, 0, st>>>(ha, data_size, sec_crc, crc_table, out, written);
}

// one block: the plan section at its device-known offset (after the chunk data)
__global__ void plan_section_k(const uint8_t *src, uint64_t n, uint64_t data_off, const uint64_t *data_size,
                               uint8_t *out) {
    uint8_t *dst = out + data_off + *data_size;
    for (uint64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

void launch_write_plan_section(const uint8_t *d_section, uint64_t n, uint64_t data_off, const uint64_t *data_size,
                               uint8_t *out, cudaStream_t st) {
    plan_section_k<<<1, 256, 0, st>>>(d_section, n, data_off, data_size, out);
}
