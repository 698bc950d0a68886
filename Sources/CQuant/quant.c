// Activation quantization (8 bits per block, as ggml's quantize_row_q8_0 / q8_K) and weight
// dequantization (the Float32 tile path and training); block layouts follow ggml-quants.h.
// The integer kernels are in matmul_q8.c.
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int pq_supported(int type) {
    switch (type) {
    case PQ_F32: case PQ_F16: case PQ_BF16: case PQ_Q4_0: case PQ_Q5_0: case PQ_Q8_0:
    case PQ_Q4_K: case PQ_Q5_K: case PQ_Q6_K: return 1;
    default: return 0;
    }
}

static int is_k(int type) { return type == PQ_Q4_K || type == PQ_Q5_K || type == PQ_Q6_K; }

int64_t pq_activation_row_bytes(int type, int64_t n) {
    if (is_k(type)) return n / 256 * (int64_t)sizeof(pq_q8a256);
    return n / 32 * (int64_t)sizeof(pq_q8a32);
}

// As ggml's quantize_row_q8_0: d = amax/127 stored as f16, q = round(x·127/amax).
static void quantize_q8a32(const float *x, pq_q8a32 *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < 32; j++) y[b].qs[j] = (int8_t)nearbyintf(x[j] * id);
        y[b].d = round_fp16(amax / 127.0f);
    }
}

// As ggml's quantize_row_q8_K: the element of largest magnitude maps to −127.
static void quantize_q8a256(const float *x, pq_q8a256 *y, int64_t n) {
    for (int64_t b = 0; b < n / 256; b++, x += 256) {
        float amax = 0, max = 0;
        for (int j = 0; j < 256; j++) {
            const float a = fabsf(x[j]);
            if (a > amax) { amax = a; max = x[j]; }
        }
        if (amax == 0) { memset(&y[b], 0, sizeof(pq_q8a256)); continue; }
        const float iscale = -127.0f / max;
        for (int j = 0; j < 256; j++) {
            const int q = (int)nearbyintf(iscale * x[j]);
            y[b].qs[j] = (int8_t)(q > 127 ? 127 : q);
        }
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].qs[16 * g + j];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1.0f / iscale;
    }
}

void pq_quantize_activations(int type, const float *x, int64_t ldx, int64_t rows, int64_t n, void *out) {
    const int64_t stride = pq_activation_row_bytes(type, n);
    for (int64_t r = 0; r < rows; r++) {
        char *dst = (char *)out + r * stride;
        if (is_k(type)) quantize_q8a256(x + r * ldx, (pq_q8a256 *)dst, n);
        else quantize_q8a32(x + r * ldx, (pq_q8a32 *)dst, n);
    }
}

// ---- dequantization (the tile path of larger batches) -------------------------------------

static void deq_q8_0(int64_t n, const uint8_t *w, float *y) {
    for (int64_t b = 0; b < n / 32; b++, w += 34, y += 32) {
        const float d = fp16(w);
        const int8_t *q = (const int8_t *)(w + 2);
        for (int j = 0; j < 32; j++) y[j] = d * (float)q[j];
    }
}

static void deq_q45_0(int64_t n, const uint8_t *w, float *y, int five) {
    const int64_t bytes = five ? 22 : 18;
    for (int64_t b = 0; b < n / 32; b++, w += bytes, y += 32) {
        const float d = fp16(w);
        uint32_t qh = 0;
        if (five) memcpy(&qh, w + 2, 4);
        const uint8_t *qs = w + (five ? 6 : 2);
        const int off = five ? 16 : 8;
        for (int j = 0; j < 16; j++) {
            const int h0 = five ? (int)((qh >> j) & 1) << 4 : 0;
            const int h1 = five ? (int)((qh >> (j + 16)) & 1) << 4 : 0;
            y[j] = d * (float)(((qs[j] & 0x0F) | h0) - off);
            y[j + 16] = d * (float)(((qs[j] >> 4) | h1) - off);
        }
    }
}

static void deq_q45_K(int64_t n, const uint8_t *w, float *y, int five) {
    const int64_t bytes = five ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, w += bytes) {
        uint8_t sc[8], m[8];
        scales_mins_k4(w + 4, sc, m);
        const float d = fp16(w), dmin = fp16(w + 2);
        const uint8_t *qh = w + 16, *qs = w + (five ? 48 : 16);
        for (int j = 0; j < 4; j++, qs += 32, y += 64) {
            const float d1 = d * sc[2 * j], m1 = dmin * m[2 * j], d2 = d * sc[2 * j + 1], m2 = dmin * m[2 * j + 1];
            for (int l = 0; l < 32; l++) {
                const int h1 = five ? ((qh[l] >> (2 * j)) & 1) << 4 : 0;
                const int h2 = five ? ((qh[l] >> (2 * j + 1)) & 1) << 4 : 0;
                y[l] = d1 * (float)((qs[l] & 0x0F) | h1) - m1;
                y[l + 32] = d2 * (float)((qs[l] >> 4) | h2) - m2;
            }
        }
    }
}

static void deq_q6_K(int64_t n, const uint8_t *w, float *y) {
    for (int64_t b = 0; b < n / 256; b++, w += 210) {
        const float d = fp16(w + 208);
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, y += 128) {
            for (int l = 0; l < 32; l++) {
                const int s = l / 16;
                y[l] = d * sc[s] * (float)(((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32);
                y[l + 32] = d * sc[s + 2] * (float)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
                y[l + 64] = d * sc[s + 4] * (float)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                y[l + 96] = d * sc[s + 6] * (float)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
    }
}

void pq_dequantize_rows(int type, int64_t n, const void *w, int64_t wstride, int64_t rows, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = (const uint8_t *)w + r * wstride;
        float *dst = out + r * n;
        switch (type) {
        case PQ_Q8_0: deq_q8_0(n, src, dst); break;
        case PQ_Q5_0: deq_q45_0(n, src, dst, 1); break;
        case PQ_Q4_0: deq_q45_0(n, src, dst, 0); break;
        case PQ_Q4_K: deq_q45_K(n, src, dst, 0); break;
        case PQ_Q5_K: deq_q45_K(n, src, dst, 1); break;
        case PQ_Q6_K: deq_q6_K(n, src, dst); break;
        case PQ_F16: for (int64_t j = 0; j < n; j++) dst[j] = _cvtsh_ss(((const uint16_t *)src)[j]); break;
        case PQ_BF16: for (int64_t j = 0; j < n; j++) dst[j] = bf16_to_f32(((const uint16_t *)src)[j]); break;
        default: memcpy(dst, src, (size_t)n * 4); break;
        }
    }
}
