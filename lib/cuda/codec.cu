// codec.cu - the codec object: options, upload of the basis and plan
// tables, the workspace layout, errors with location and the profiler.
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/codec.cuh"
#include "cuda/common.cuh"
#include "cuda/crc.cuh"
#include "cuda/device_guard.h"
#include "cuda/fp8_basis.h"
#include "cuda/layout.cuh"
#include "cuda/rans_decode.cuh"

extern "C" {
#include "entropy/rans.h"
#include "transform/rope.h"
#include "quant/group_quant.h"
#include "util/cache.h"
#include "alloc/plan_solve.h"
#include "util/half.h"
#include "transform/fp8.h"
}
#include "util/bitexact.h"

// ---- errors with location -------------------------------------------------------

static const char *base_name(const char *file) {
    const char *s = strrchr(file, '/');
    return s ? s + 1 : file;
}

kvtc_result cuda_fail_rt(kvtc_cuda_codec *c, cudaError_t e, const char *call, const char *file, int line) {
    if (c)
        snprintf(c->err, sizeof c->err, "%s:%d: %s: %s: %s", base_name(file), line, call, cudaGetErrorName(e),
                 cudaGetErrorString(e));
    return KVTC_ERR_CUDA;
}

kvtc_result cuda_fail_blas(kvtc_cuda_codec *c, cublasStatus_t s, const char *call, const char *file, int line) {
    if (c)
        snprintf(c->err, sizeof c->err, "%s:%d: %s: %s: %s", base_name(file), line, call, cublasGetStatusName(s),
                 cublasGetStatusString(s));
    return KVTC_ERR_CUDA;
}

extern "C" size_t kvtc_cuda_last_error(const kvtc_cuda_codec *c, char *buf, size_t len) {
    const char *m = c ? c->err : "";
    size_t n = strlen(m);
    if (buf && len) {
        size_t k = n < len - 1 ? n : len - 1;
        memcpy(buf, m, k);
        buf[k] = 0;
    }
    return n;
}

// ---- profiler ---------------------------------------------------------------------

void prof_mark(kvtc_cuda_codec *c, cudaStream_t s, const char *name) {
    if (!c->profile || c->n_ev >= KVTC_CUDA_PROF_EVENTS) return;
    cudaEventRecord(c->ev[c->n_ev], s);
    c->ev_name[c->n_ev++] = name;
}
void prof_report(kvtc_cuda_codec *c, const char *what) {
    if (!c->profile || c->n_ev < 2) { if (c->profile) c->n_ev = 0; return; }
    cudaEventSynchronize(c->ev[c->n_ev - 1]);
    float tot = 0;
    cudaEventElapsedTime(&tot, c->ev[0], c->ev[c->n_ev - 1]);
    fprintf(stderr, "PROFILE %s: %.3f ms:", what, tot);
    for (int i = 1; i < c->n_ev; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, c->ev[i - 1], c->ev[i]);
        fprintf(stderr, " %s %.3f;", c->ev_name[i], ms);
    }
    fprintf(stderr, "\n");
    c->n_ev = 0;
}
// ---- options, codec ------------------------------------------------------------------

extern "C" void kvtc_cuda_options_init(kvtc_cuda_options *o) {
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->ratio = 20.0;  // the CPU encoder's default (kvtc_encode_options_init)
    o->n_sink = 4;
    o->n_window = 128;
    o->chunk_tokens = 256;
    o->gemm = KVTC_CUDA_GEMM_BF16;
    o->device = -1;
}

void free_stream_plan(StreamPlan *sp) {
    cudaFree(sp->d_groups);
    cudaFree(sp->d_raw);
    cudaFree(sp->d_item0);
    memset(sp, 0, sizeof *sp);
}

static void free_plan_dev(PlanDev *pd) {
    for (int s = 0; s < 2; s++) free_stream_plan(&pd->s[s]);
    memset(pd, 0, sizeof *pd);
}

static void free_plans(kvtc_cuda_codec *c) {
    if (c->plans)
        for (uint32_t i = 0; i < c->n_plans; i++) free_plan_dev(&c->plans[i]);
    if (c->own)
        for (uint32_t i = c->n_stored; i < c->n_plans; i++) {
            plan_stream_free(&c->own[i].k);
            plan_stream_free(&c->own[i].v);
        }
    free(c->plans);
    free(c->own);
    c->plans = NULL;
    c->own = NULL;
    cudaFree(c->d_plan_section);
    c->d_plan_section = NULL;
}

extern "C" void kvtc_cuda_codec_free(kvtc_cuda_codec *c) {
    if (!c) return;
    DeviceGuard dg(c->opt.device);
    free_plans(c);
    for (int s = 0; s < 2; s++) {
        cudaFree(c->d_basis[s]);
        cudaFree(c->d_mean[s]);
        cudaFree(c->d_weight[s]);
        cudaFree(c->d_inv_weight[s]);
        cudaFree(c->d_basis8[s]);
        cudaFree(c->d_fold[s]);
        cudaFree(c->d_basis8e[s]);
    }
    if (c->lt) cublasLtDestroy(c->lt);
    cudaFree(c->d_inv_freq);
    cudaFree(c->d_crc_table);
    if (c->blas) cublasDestroy(c->blas);
    kvtc_encoder_free(c->host_enc);
    if (c->profile)
        for (int i = 0; i < KVTC_CUDA_PROF_EVENTS; i++) cudaEventDestroy(c->ev[i]);
    free(c);
}

kvtc_result build_stream_plan(const plan_stream *ps, StreamPlan *sp) {
    memset(sp, 0, sizeof *sp);
    sp->rank = ps->rank_used;
    GroupDesc *g = (GroupDesc *)malloc(sizeof(GroupDesc) * (ps->n_groups + 1));
    RawDesc *rw = (RawDesc *)malloc(sizeof(RawDesc) * (ps->rank_used + 1));
    if (!g || !rw) { free(g); free(rw); return KVTC_ERR_OUT_OF_MEMORY; }
    uint32_t col = 0, n = 0, nr = 0, pb = 0, cb = 0;
    kvtc_result r = KVTC_OK;
    for (uint32_t i = 0; i < ps->n_groups && col < ps->rank_used && !r; i++) {
        const dp_group *dg = &ps->groups[i];
        GroupDesc d = {col, dg->size, dg->bits, pb, cb};
        if (dg->bits >= 1 && dg->bits <= DP_MAX_BITS) {
            // sizes 16, 64, 256, 1024 (basis validation): group_threads
            // needs a power of two >= 16
            if (dg->size < 16 || dg->size > 1024 || (dg->size & (dg->size - 1))) r = KVTC_ERR_UNSUPPORTED;
            pb += 4;
            cb += dg->size * dg->bits;
            g[n++] = d;
        } else if (dg->bits == DP_RAW_BITS) {
            for (uint32_t j = 0; j < dg->size && col + j < ps->rank_used; j++) rw[nr++] = RawDesc{col + j, pb, dg->size, j};
            pb += 2 * dg->size;
        } else if (dg->bits == 0) {
            /* decoded as zeros, up to rank_used only: the last (dropped)
             * group of a plan runs to p, and D rows are rank_used wide */
            d.size = dg->size < ps->rank_used - col ? dg->size : ps->rank_used - col;
            g[n++] = d;
        } else {
            r = KVTC_ERR_UNSUPPORTED;
        }
        col += dg->size;
    }
    sp->n_groups = n;
    sp->n_raw = nr;
    sp->param_bytes = pb;
    sp->code_bits = cb;
    uint32_t *item0 = r ? NULL : (uint32_t *)malloc(sizeof(uint32_t) * (n + 1));
    if (!r && !item0) r = KVTC_ERR_OUT_OF_MEMORY;
    if (!r) {
        item0[0] = 0;
        for (uint32_t i = 0; i < n; i++) item0[i + 1] = item0[i] + group_threads(g[i].size, g[i].bits);
        sp->items = item0[n];
    }
    if (!r) {
        cudaError_t e = cudaMalloc(&sp->d_groups, sizeof(GroupDesc) * (n ? n : 1));
        if (e == cudaSuccess && n) e = cudaMemcpy(sp->d_groups, g, sizeof(GroupDesc) * n, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMalloc(&sp->d_raw, sizeof(RawDesc) * (nr ? nr : 1));
        if (e == cudaSuccess && nr) e = cudaMemcpy(sp->d_raw, rw, sizeof(RawDesc) * nr, cudaMemcpyHostToDevice);
        if (e == cudaSuccess) e = cudaMalloc(&sp->d_item0, sizeof(uint32_t) * (n + 1));
        if (e == cudaSuccess) e = cudaMemcpy(sp->d_item0, item0, sizeof(uint32_t) * (n + 1), cudaMemcpyHostToDevice);
        if (e != cudaSuccess) r = KVTC_ERR_CUDA;
    }
    free(item0);
    free(g);
    free(rw);
    return r;
}

static kvtc_result upload_f32(kvtc_cuda_codec *c, float **dst, const float *src, size_t n) {
    CUDA_CHECK(c, cudaMalloc(dst, sizeof(float) * (n ? n : 1)));
    if (n) CUDA_CHECK(c, cudaMemcpy(*dst, src, sizeof(float) * n, cudaMemcpyHostToDevice));
    return KVTC_OK;
}

// KVTC_CUDA_PROJ_FP8_ENCODE: the e4m3 basis rows of stream s, [rmax][p]
// then zero rows up to a multiple of 16 (the GEMM's M is the rank rounded
// up), converted on the device (fp8_basis.h: transform/fp8.c's bytes).
static kvtc_result upload_fp8_rows(kvtc_cuda_codec *c, int s, const basis_stream *bs) {
    size_t np = (size_t)((c->rmax[s] + 15) / 16 * 16) * c->p;
    CUDA_CHECK(c, cudaMalloc(&c->d_basis8e[s], np ? np : 1));
    if (np) CUDA_CHECK(c, cudaMemset(c->d_basis8e[s], 0, np));
    kvtc_result res = kvi_cuda_fp8_basis_rows(bs, c->rmax[s], (uint8_t *)c->d_basis8e[s], &c->scale8e[s]);
    if (res == KVTC_ERR_CUDA)
        return cuda_fail_rt(c, cudaGetLastError(), "kvi_cuda_fp8_basis_rows (e4m3 basis rows)", __FILE__, __LINE__);
    return res;
}

// KVTC_CUDA_PROJ_FP8_DECODE: the transposed e4m3 basis of stream s (all rmax
// components, ld a multiple of 16) and the fold factors, the bytes the CPU
// emulation uses (transform/fp8.c), converted on the device.
static kvtc_result upload_fp8_operands(kvtc_cuda_codec *c, int s, const basis_stream *bs) {
    uint32_t r = c->rmax[s], ld = (r + 15) / 16 * 16;
    if (!ld) ld = 16;
    c->ld8[s] = ld;
    size_t n = (size_t)c->p * ld;
    CUDA_CHECK(c, cudaMalloc(&c->d_basis8[s], n ? n : 1));
    kvtc_result res = kvi_cuda_fp8_basis_t(bs, r, ld, (uint8_t *)c->d_basis8[s], &c->scale8[s]);
    if (res == KVTC_ERR_CUDA)
        return cuda_fail_rt(c, cudaGetLastError(), "kvi_cuda_fp8_basis_t (transposed e4m3 basis)", __FILE__, __LINE__);
    if (res) return res;
    float *fold = (float *)malloc(sizeof(float) * (r ? r : 1));
    if (!fold) return KVTC_ERR_OUT_OF_MEMORY;
    for (uint32_t j = 0; j < r; j++) fold[j] = kvi_fp8_fold(bs, j);
    res = upload_f32(c, &c->d_fold[s], fold, r);
    free(fold);
    return res;
}

// Device tables of plan pl (groups of K and V) into pd.
static kvtc_result build_plan_dev(kvtc_cuda_codec *c, const basis_plan *pl, PlanDev *pd) {
    (void)c;
    memset(pd, 0, sizeof *pd);
    pd->host = pl;
    pd->fingerprint = pl->fingerprint;
    kvtc_result r = build_stream_plan(&pl->k, &pd->s[0]);
    if (!r) r = build_stream_plan(&pl->v, &pd->s[1]);
    return r;
}

// CRC-32 on the host with the shared table (plan sections: a few hundred bytes).
static uint32_t host_crc32(const uint8_t *p, uint64_t n) {
    uint32_t c = 0xffffffffu;
    for (uint64_t i = 0; i < n; i++) c = kvi_crc32_table_entry((c ^ p[i]) & 0xff) ^ (c >> 8);
    return ~c;
}

kvtc_result resolve_stream_plan(kvtc_cuda_codec *c, const container_header *h, const uint8_t *buf, size_t size,
                                const PlanDev **pd) {
    for (uint32_t i = 0; i < c->n_plans; i++)
        if (c->plans[i].host && c->plans[i].fingerprint == h->plan_fingerprint) {
            *pd = &c->plans[i];
            return KVTC_OK;
        }
    if (!(h->flags & CONTAINER_FLAG_PLAN)) return KVTC_ERR_BASIS_MISMATCH;
    const container_section_entry *e = &h->sections[SEC_PLAN];
    if (e->offset > size || e->size > size - e->offset) return KVTC_ERR_TRUNCATED;
    // container_read_plan_section reads the 16-byte head before checking the size
    if (e->size < container_plan_section_size(0, 0)) return KVTC_ERR_CORRUPT;
    if (host_crc32(buf + e->offset, e->size) != e->crc32) return KVTC_ERR_CORRUPT;
    basis_plan pl;
    kvtc_result r = container_read_plan_section(buf, h, c->basis, &pl);
    if (r) return r;
    if (pl.fingerprint != h->plan_fingerprint) {
        plan_stream_free(&pl.k);
        plan_stream_free(&pl.v);
        return KVTC_ERR_BASIS_MISMATCH;
    }
    // a free slot, else the oldest carried plan (cudaFree waits for work in flight)
    uint32_t first = c->n_stored + (uint32_t)c->enc_carries_plan, idx;
    if (c->n_plans < c->cap_plans) {
        idx = c->n_plans++;
    } else {
        idx = first + c->next_carried++ % KVTC_CUDA_CARRIED_PLANS;
        free_plan_dev(&c->plans[idx]);
        plan_stream_free(&c->own[idx].k);
        plan_stream_free(&c->own[idx].v);
    }
    c->own[idx] = pl;
    r = build_plan_dev(c, &c->own[idx], &c->plans[idx]);
    if (r) {
        // an empty slot (host NULL): never matched, skipped by layout_ws
        free_plan_dev(&c->plans[idx]);
        plan_stream_free(&c->own[idx].k);
        plan_stream_free(&c->own[idx].v);
        memset(&c->own[idx], 0, sizeof c->own[idx]);
        return r;
    }
    *pd = &c->plans[idx];
    return KVTC_OK;
}

extern "C" kvtc_result kvtc_cuda_codec_alloc(const kvtc_basis *b, const kvtc_cuda_options *opts, kvtc_cuda_codec **out) {
    if (!b || !out) return KVTC_ERR_INVALID_ARGUMENT;
    *out = NULL;
    kvtc_cuda_options o;
    kvtc_cuda_options_init(&o);
    if (opts) {
        // 0.1 callers end at `profile`, 0.2 callers at `recompute_user`; the
        // fields after theirs keep their defaults
        size_t v01 = offsetof(kvtc_cuda_options, model_fingerprint), v02 = offsetof(kvtc_cuda_options, projection);
        if (opts->struct_size != sizeof o && opts->struct_size != v01 && opts->struct_size != v02)
            return KVTC_ERR_INVALID_ARGUMENT;
        memcpy(&o, opts, opts->struct_size);
        o.struct_size = sizeof o;
    }
    if (o.chunk_tokens == 0 || o.chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS || !(o.ratio > 0) || !isfinite(o.ratio) ||
        (unsigned)o.gemm > KVTC_CUDA_GEMM_FP32 ||
        ((unsigned)o.projection & ~(unsigned)(KVTC_CUDA_PROJ_FP8 | KVTC_CUDA_PROJ_FP8_FAST_ACCUM)) ||
        o.projection == KVTC_CUDA_PROJ_FP8_FAST_ACCUM ||
        (o.projection != KVTC_CUDA_PROJ_DEFAULT && o.gemm != KVTC_CUDA_GEMM_BF16))
        return KVTC_ERR_INVALID_ARGUMENT;
    if (b->recompute_layers >= b->geometry.n_layers) return KVTC_ERR_UNSUPPORTED;
    if (b->geometry.head_dim % 2 || b->geometry.head_dim / 2 > 1024) return KVTC_ERR_UNSUPPORTED;
    if (o.device < 0 && cudaGetDevice(&o.device) != cudaSuccess) return KVTC_ERR_CUDA;
    DeviceGuard dg(o.device);  // the codec lives on o.device; the caller's device is restored
    if (!dg.ok) return KVTC_ERR_CUDA;
    if (o.projection != KVTC_CUDA_PROJ_DEFAULT) {
        // FP8 tensor cores (Ada, Hopper and later); cuBLASLt's FP8 kernels
        // need 16-byte multiples: the GEMM's rows are p (all layers) or a
        // range of layers (a multiple of head_dim)
        int major = 0, minor = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, o.device) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, o.device) != cudaSuccess)
            return KVTC_ERR_CUDA;
        if (major * 10 + minor < 89 || b->k.p % 16 || b->geometry.head_dim % 16) return KVTC_ERR_UNSUPPORTED;
    }
    kvtc_cuda_codec *c = (kvtc_cuda_codec *)calloc(1, sizeof *c);
    if (!c) return KVTC_ERR_OUT_OF_MEMORY;
    c->basis = b;
    c->opt = o;
    c->p = b->k.p;
    c->esize = o.gemm == KVTC_CUDA_GEMM_BF16 ? 2 : 4;
    // The encoder's plan, as the CPU encoder chooses it: the stored plan made
    // for this ratio, else one solved now (the DP of lib/format/plan_solve.c;
    // streams then carry its groups), unless the DP lands on a stored plan.
    kvtc_result r = KVTC_OK;
    basis_plan solved;
    memset(&solved, 0, sizeof solved);
    int stored = basis_find_exact_plan(b, o.ratio);
    if (stored < 0) {
        if ((r = basis_solve_plan(b, o.ratio, &solved))) { free(c); return r; }
        stored = basis_find_plan_by_fingerprint(b, solved.fingerprint);
        if (stored >= 0) {
            plan_stream_free(&solved.k);
            plan_stream_free(&solved.v);
        }
    }
    c->n_stored = b->n_plans;
    c->cap_plans = b->n_plans + 1 + KVTC_CUDA_CARRIED_PLANS;
    c->plans = (PlanDev *)calloc(c->cap_plans, sizeof(PlanDev));
    c->own = (basis_plan *)calloc(c->cap_plans, sizeof(basis_plan));
    if (!c->plans || !c->own) {
        plan_stream_free(&solved.k);
        plan_stream_free(&solved.v);
        free(c->plans);
        free(c->own);
        free(c);
        return KVTC_ERR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < b->n_plans && !r; i++, c->n_plans++) r = build_plan_dev(c, &b->plans[i], &c->plans[i]);
    if (stored >= 0) {
        c->enc_plan = (uint32_t)stored;
    } else {
        c->enc_plan = c->n_plans;
        c->enc_carries_plan = 1;
        c->own[c->enc_plan] = solved;  // owned by the codec from here on
        c->n_plans++;
        if (!r) r = build_plan_dev(c, &c->own[c->enc_plan], &c->plans[c->enc_plan]);
        if (!r) {
            // the plan section every stream of this encoder carries, with its CRC
            c->plan_section_size = container_plan_section_size(solved.k.n_groups, solved.v.n_groups);
            uint8_t *tmp = (uint8_t *)malloc(c->plan_section_size);
            if (!tmp) r = KVTC_ERR_OUT_OF_MEMORY;
            if (!r) {
                container_write_plan_section(&c->own[c->enc_plan], tmp);
                c->plan_section_crc = host_crc32(tmp, c->plan_section_size);
                if (cudaMalloc(&c->d_plan_section, c->plan_section_size) != cudaSuccess ||
                    cudaMemcpy(c->d_plan_section, tmp, c->plan_section_size, cudaMemcpyHostToDevice) != cudaSuccess)
                    r = KVTC_ERR_CUDA;
            }
            free(tmp);
        }
    }
    const basis_stream *bs[2] = {&b->k, &b->v};
    for (int s = 0; s < 2 && !r; s++) {
        // every stored component: plans solved later (streams that carry
        // them) may use more than the stored plans do
        c->rmax[s] = bs[s]->rank;
        size_t n = (size_t)c->rmax[s] * c->p;
        if (cudaMalloc(&c->d_basis[s], (n ? n : 1) * c->esize) != cudaSuccess) { r = KVTC_ERR_CUDA; break; }
        if (n) {
            void *tmp = malloc(n * c->esize);
            if (!tmp) { r = KVTC_ERR_OUT_OF_MEMORY; break; }
            if (c->esize == 2) {
                uint16_t *t16 = (uint16_t *)tmp;
                for (size_t i = 0; i < n; i++) t16[i] = kvi_f32_to_bf16(bs[s]->basis[i]);
            } else {
                memcpy(tmp, bs[s]->basis, n * 4);
            }
            if (cudaMemcpy(c->d_basis[s], tmp, n * c->esize, cudaMemcpyHostToDevice) != cudaSuccess) r = KVTC_ERR_CUDA;
            free(tmp);
        }
        if (!r) r = upload_f32(c, &c->d_mean[s], bs[s]->mean, c->p);
        if (!r) r = upload_f32(c, &c->d_weight[s], bs[s]->weight, c->p);
        if (!r) {
            float *inv = (float *)malloc(sizeof(float) * (c->p ? c->p : 1));
            if (!inv) r = KVTC_ERR_OUT_OF_MEMORY;
            // a weight below ~2^-128 (the loader takes any finite w > 0) has
            // no fp32 reciprocal: x * inf is not the CPU's x / w, so refuse
            for (uint32_t i = 0; !r && i < c->p; i++) {
                inv[i] = 1.0f / bs[s]->weight[i];
                if (!isfinite(inv[i])) r = KVTC_ERR_UNSUPPORTED;
            }
            if (!r) r = upload_f32(c, &c->d_inv_weight[s], inv, c->p);
            free(inv);
        }
        if (!r && (o.projection & KVTC_CUDA_PROJ_FP8_DECODE)) r = upload_fp8_operands(c, s, bs[s]);
        if (!r && (o.projection & KVTC_CUDA_PROJ_FP8_ENCODE)) r = upload_fp8_rows(c, s, bs[s]);
    }
    if (!r && o.projection != KVTC_CUDA_PROJ_DEFAULT) {
        c->fp8_dec = (o.projection & KVTC_CUDA_PROJ_FP8_DECODE) != 0;
        c->fp8_enc = (o.projection & KVTC_CUDA_PROJ_FP8_ENCODE) != 0;
        c->fp8_fast_accum = (o.projection & KVTC_CUDA_PROJ_FP8_FAST_ACCUM) != 0;
        if (cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) r = KVTC_ERR_CUDA;
    }
    if (!r) {
        rope_table rt;
        r = rope_table_init(&rt, &b->geometry);
        if (!r) {
            uint32_t np = rt.n_pairs ? rt.n_pairs : 1;
            if (cudaMalloc(&c->d_inv_freq, sizeof(double) * np) != cudaSuccess) r = KVTC_ERR_CUDA;
            else if (rt.n_pairs &&
                     cudaMemcpy(c->d_inv_freq, rt.inv_freq, sizeof(double) * rt.n_pairs, cudaMemcpyHostToDevice) != cudaSuccess)
                r = KVTC_ERR_CUDA;
            rope_table_free(&rt);
        }
    }
    if (!r) {
        uint32_t t[CRC_DEVICE_TABLE_WORDS];
        crc_device_table(t);
        if (cudaMalloc(&c->d_crc_table, sizeof t) != cudaSuccess ||
            cudaMemcpy(c->d_crc_table, t, sizeof t, cudaMemcpyHostToDevice) != cudaSuccess)
            r = KVTC_ERR_CUDA;
    }
    if (!r && cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) r = KVTC_ERR_CUDA;
    if (!r && o.profile) {
        c->profile = 1;
        for (int i = 0; i < KVTC_CUDA_PROF_EVENTS && !r; i++)
            if (cudaEventCreate(&c->ev[i]) != cudaSuccess) r = KVTC_ERR_CUDA;
    }
    if (r) { kvtc_cuda_codec_free(c); return r; }
    *out = c;
    return KVTC_OK;
}

// ---- workspace layout --------------------------------------------------------------

static size_t al(size_t x) { return (x + 255) & ~(size_t)255; }

// Checked arithmetic for the workspace layout: hostile or huge token counts
// must give kvtc_cuda_workspace_size() == 0, never a wrapped small size
// (issue 9). Every product saturates to UINT64_MAX and sets *ov.
static uint64_t mulc(uint64_t a, uint64_t b, bool *ov) {
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) { *ov = true; return UINT64_MAX; }
    return r;
}
static uint64_t addc(uint64_t a, uint64_t b, bool *ov) {
    uint64_t r;
    if (__builtin_add_overflow(a, b, &r)) { *ov = true; return UINT64_MAX; }
    return r;
}

// Returns 0 when the layout overflows size_t (or n exceeds the format).
int layout_ws(const kvtc_cuda_codec *c, uint64_t n, uint32_t chunk_tokens, const PlanDev *extra, Layout *L) {
    memset(L, 0, sizeof *L);
    const kvtc_geometry *g = &c->basis->geometry;
    if (n > KVTC_MAX_TOKENS) return 0;
    if (!chunk_tokens) chunk_tokens = c->opt.chunk_tokens;
    if (chunk_tokens > CONTAINER_MAX_CHUNK_TOKENS) return 0;
    bool ov = false;
    uint64_t C = (n + chunk_tokens - 1) / chunk_tokens;
    if (C == 0) C = 1;
    L->C = C;
    uint64_t maxpay = 0;
    for (uint32_t i = 0; i <= c->n_plans; i++) {
        const PlanDev *pd = i < c->n_plans ? &c->plans[i] : extra;
        if (!pd || !pd->host) continue;
        uint64_t pz = quant_payload_size(&pd->host->k, &pd->host->v, chunk_tokens < n ? chunk_tokens : (n ? n : 1));
        if (pz > maxpay) maxpay = pz;
    }
    if (maxpay > UINT32_MAX) return 0;  // a chunk payload is a u32 in the format
    L->max_payload = al(maxpay + 1);
    // any chunk's segment list: lanes <= payload / 4096 + 32 per segment, words <= payload + lanes
    L->Lmax = (uint32_t)(L->max_payload / RANS_SYMBOLS_PER_LANE + 32 * ENC_MAX_SEGS + 1);
    L->Wmax = L->max_payload + L->Lmax;
    uint64_t raw = mulc((uint64_t)g->n_layers * g->n_kv_heads * g->head_dim * kvtc_dtype_size(KVTC_DTYPE_F32),
                        (uint64_t)c->opt.n_sink + c->opt.n_window + 64, &ov);
    uint64_t big = 2 * maxpay + (uint64_t)DEC_MAX_SEGS * 40000;
    if (raw > big) big = raw;
    if (mulc(n, 8, &ov) > big) big = n * 8;
    if (mulc(C, CONTAINER_CHUNK_ENTRY, &ov) > big) big = C * CONTAINER_CHUNK_ENTRY;
    L->max_pieces = big / CRC_PIECE + 1;
    uint32_t np = g->rope_type != KVTC_ROPE_NONE ? kvi_geometry_rope_dim(g) / 2 : 1;
    uint32_t rm = c->rmax[0] > c->rmax[1] ? c->rmax[0] : c->rmax[1];
    uint64_t o = 0;
#define TAKE(field, bytes)                                                     \
    do {                                                                       \
        uint64_t b_ = (bytes);                                                 \
        if (b_ > SIZE_MAX - 512) ov = true;                                    \
        L->field = (size_t)o;                                                  \
        o = addc(o, ov ? 0 : al((size_t)b_), &ov);                             \
    } while (0)
    uint64_t segs4 = mulc(C, (uint64_t)ENC_MAX_SEGS * 4, &ov);
    TAKE(cs, addc(mulc(mulc(n, np, &ov), sizeof(float2), &ov), 8, &ov));
    TAKE(X, addc(mulc(mulc(n, c->p, &ov), c->esize, &ov), 8, &ov));
    // KVTC_CUDA_PROJ_FP8_ENCODE: the rows in e4m3 and their scales
    TAKE(X8, c->fp8_enc ? addc(mulc(n, c->p, &ov), 8, &ov) : 0);
    TAKE(rs, c->fp8_enc ? addc(mulc(n, 4, &ov), 8, &ov) : 0);
    // D: fp32 coefficients while encoding (rows rounded up to 16 with FP8);
    // while decoding one stream's dequantized coefficients at a time (esize
    // each, or e4m3 rows rounded up to 16 with FP8), or both K's and V's
    // while kvtc_cuda_hold keeps them (hold_d_offset, 256-aligned V)
    uint64_t r1 = rm ? rm : 1;
    uint64_t d_row = (uint64_t)(c->fp8_enc ? (r1 + 15) / 16 * 16 : r1) * 4;
    uint64_t d_hold = c->fp8_dec ? 2 * (uint64_t)(c->ld8[0] > c->ld8[1] ? c->ld8[0] : c->ld8[1]) : 2 * r1 * c->esize;
    TAKE(D, addc(mulc(n, d_row > d_hold ? d_row : d_hold, &ov), 512, &ov));
    TAKE(payload, mulc(C, L->max_payload, &ov));
    TAKE(pieces, mulc(mulc(C + 8, L->max_pieces, &ov), 4, &ov));
    TAKE(crc_out, mulc(C + 8, 4, &ov));
    TAKE(sec_crc, 64);
    L->blas_size = 32u << 20;
    TAKE(blas, L->blas_size);
    TAKE(block_check, KVTC_CUDA_BLOCK_CHECK_BYTES);  // launch_check_block_table's bitmap
    L->hist_bytes = mulc(segs4, 256 * 4, &ov);
    TAKE(hist, L->hist_bytes);
    TAKE(freq, mulc(segs4, 256 * 2, &ov));
    TAKE(start, mulc(segs4, 256 * 2, &ov));
    TAKE(npres, mulc(segs4, 4, &ov));
    TAKE(lstate, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(lcount, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(lwoff, mulc(mulc(C, L->Lmax, &ov), 4, &ov));
    TAKE(words, mulc(mulc(C, L->Wmax, &ov), 2, &ov));
    TAKE(segb, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(segm, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(sego, mulc(C, ENC_MAX_SEGS * 4, &ov));
    TAKE(csize, mulc(C, 4, &ov));
    TAKE(coff, mulc(C, 8, &ov));
    TAKE(dsize, 8);
    TAKE(dseg, mulc(C, DEC_MAX_SEGS * sizeof(DSeg), &ov));
    TAKE(dnseg, mulc(C, 4, &ov));
    TAKE(dnblk, mulc(C, 4, &ov));
    TAKE(dcoff, mulc(C, 8, &ov));
    TAKE(dcsize, mulc(C, 4, &ov));
    TAKE(dccrc, mulc(C, 4, &ov));
    TAKE(hpos, addc(mulc(n, 8, &ov), 8, &ov));
    TAKE(hids, addc(mulc(n, 4, &ov), 8, &ov));
    TAKE(hstat, 8);
#undef TAKE
    if (ov || o > SIZE_MAX) return 0;
    L->total = (size_t)o;
    return 1;
}

extern "C" size_t kvtc_cuda_workspace_size(const kvtc_cuda_codec *c, uint64_t n_tokens, uint32_t chunk_tokens) {
    if (!c) return 0;
    Layout L;
    if (!layout_ws(c, n_tokens, chunk_tokens, NULL, &L)) return 0;
    return L.total;
}

kvtc_result check_dev_cache(const kvtc_cuda_codec *c, const kvtc_cache *cache) {
    if (!cache) return KVTC_ERR_INVALID_ARGUMENT;
    kvtc_result r = kvi_cache_check(cache);
    if (r) return r;
    if (!kvi_geometry_equal(&cache->geometry, &c->basis->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

kvtc_result check_dev_layout(const kvtc_cuda_codec *c, const kvtc_cache_layout *l, uint32_t lb, uint32_t le) {
    kvtc_result r = dev_layout_check(l, lb, le);
    if (r) return r;
    if (!kvi_geometry_equal(&l->geometry, &c->basis->geometry)) return KVTC_ERR_GEOMETRY_MISMATCH;
    return KVTC_OK;
}

kvtc_result enc_header(const kvtc_cuda_codec *c, const kvtc_cache_layout *l, container_header *h) {
    if (c->basis->recompute_layers && l->n_tokens && !l->token_ids) return KVTC_ERR_INVALID_ARGUMENT;
    /* positions live in device memory: any given positions are stored (the
     * CPU encoder omits them when they are 0..n-1; both forms decode alike) */
    kvtc_result r = container_header_init_plan(h, c->basis, c->plans[c->enc_plan].host, &l->geometry, l->dtype,
                                               l->n_tokens, c->opt.n_sink, c->opt.n_window, c->opt.chunk_tokens,
                                               CONTAINER_CODEC_RANS, l->positions != NULL);
    if (r) return r;
    // token ids the caller has are kept, as the CPU encoder does; bases that
    // recompute layers need them, and record the model
    if (l->token_ids && l->n_tokens) h->flags |= CONTAINER_FLAG_TOKEN_IDS;
    if (c->opt.model_fingerprint) {
        h->flags |= CONTAINER_FLAG_MODEL_FINGERPRINT;
        h->model_fingerprint = c->opt.model_fingerprint;
    }
    // a solved plan: its section follows the chunk data (offset known on the device only)
    if (c->enc_carries_plan) container_set_plan_section(h, c->plan_section_size);
    if ((r = container_layout(h, 0))) return r;
    if (c->enc_carries_plan) h->sections[SEC_PLAN].crc32 = c->plan_section_crc;
    return KVTC_OK;
}

extern "C" size_t kvtc_cuda_compress_layout_bound(const kvtc_cuda_codec *c, const kvtc_cache_layout *l) {
    if (!c || check_dev_layout(c, l, 0, 0)) return 0;
    container_header h;
    if (enc_header(c, l, &h)) return 0;
    const basis_plan *pl = c->plans[c->enc_plan].host;
    uint64_t coded = container_coded_tokens(&h), data = c->enc_carries_plan ? c->plan_section_size : 0;
    for (uint64_t t0 = 0; t0 < coded; t0 += h.chunk_tokens) {
        uint64_t n = coded - t0 < h.chunk_tokens ? coded - t0 : h.chunk_tokens;
        data += rans_bound((size_t)quant_payload_size(&pl->k, &pl->v, n), ENC_MAX_SEGS);
    }
    return (size_t)(h.sections[SEC_CHUNK_DATA].offset + data);
}

extern "C" size_t kvtc_cuda_compress_bound(const kvtc_cuda_codec *c, const kvtc_cache *cache) {
    if (!c || check_dev_cache(c, cache)) return 0;
    kvtc_cache_layout l;
    kvtc_cache_layout_from_cache(cache, &l);
    return kvtc_cuda_compress_layout_bound(c, &l);
}
