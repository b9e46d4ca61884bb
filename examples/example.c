/* example.c - libkvtc in one program: restore a KV cache from a stream (as a
 * server does when a cached prefix comes back), then store it again.
 *   example BASIS STREAM      (make both with the kvtc CLI: calibrate, compress) */
#include <kvtc.h>
#include <stdio.h>
#include <stdlib.h>

static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) &&
            fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
        *size = n > 0 ? (size_t)n : 0;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    size_t basis_size = 0, size = 0;
    void *basis_bytes = argc == 3 ? read_all(argv[1], &basis_size) : NULL;
    void *stream = argc == 3 ? read_all(argv[2], &size) : NULL;
    if (!basis_bytes || !stream) { fprintf(stderr, "usage: example BASIS STREAM\n"); return 2; }

    kvtc_basis *basis = NULL;
    kvtc_result r = kvtc_basis_load(basis_bytes, basis_size, &basis);
    if (r) { fprintf(stderr, "basis: %s\n", kvtc_result_string(r)); return 1; }

    /* restore: the stream describes itself; no basis needed to size buffers */
    kvtc_stream_info info = {.struct_size = sizeof info};
    r = kvtc_stream_get_info(stream, size, &info);
    if (r) { fprintf(stderr, "stream: %s\n", kvtc_result_string(r)); return 1; }
    kvtc_cache cache = {info.geometry, info.dtype, info.n_tokens,
                        malloc(info.k_bytes), malloc(info.v_bytes), NULL, NULL};
    kvtc_decoder *dec = NULL;
    r = kvtc_decoder_alloc(basis, NULL, &dec);   /* bases with recomputed layers need
                                                    kvtc_decode_options.recompute */
    if (!r) r = kvtc_decompress(dec, stream, size, &cache);
    if (r) { fprintf(stderr, "decompress: %s\n", kvtc_result_string(r)); return 1; }

    /* store: compress the cache again with the plan the stream used */
    kvtc_encode_options eo;
    kvtc_encode_options_init(&eo);          /* ratio 20, 4 sinks, 128 window, DEFLATE */
    eo.ratio = info.plan_ratio;
    eo.n_threads = 2;
    kvtc_encoder *enc = NULL;
    r = kvtc_encoder_alloc(basis, &eo, &enc);
    size_t cap = r ? 0 : kvtc_compress_bound(enc, &cache), size2 = 0;
    void *stream2 = malloc(cap ? cap : 1);
    if (!r) r = kvtc_compress(enc, &cache, stream2, cap, &size2);
    if (r) { fprintf(stderr, "compress: %s\n", kvtc_result_string(r)); return 1; }

    printf("libkvtc %s: %llu tokens, stream %zu bytes, decoded %llu bytes, stored again in %zu bytes\n",
           kvtc_version_string(), (unsigned long long)info.n_tokens, size,
           (unsigned long long)(info.k_bytes + info.v_bytes), size2);
    kvtc_encoder_free(enc); kvtc_decoder_free(dec); kvtc_basis_free(basis);
    free(stream2); free(cache.k); free(cache.v); free(stream); free(basis_bytes);
    return 0;
}
