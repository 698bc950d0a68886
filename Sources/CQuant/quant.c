// Block layouts follow ggml-quants.h; the integer dot products follow the structure of
// ggml-cpu's x86 kernels (unsigned × signed byte products with _mm256_maddubs_epi16, offsets
// folded in through the activation block sums).
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
static int is_float(int type) { return type == PQ_F32 || type == PQ_F16 || type == PQ_BF16; }

int64_t pq_activation_row_bytes(int type, int64_t n) {
    if (is_float(type)) return n * 4;
    if (is_k(type)) return n / 256 * (int64_t)sizeof(pq_q8a256);
    return n / 32 * (int64_t)sizeof(pq_q8a32);
}

// As ggml's quantize_row_q8_0: d = amax/127 stored as f16, q = round(x·127/amax).
static void quantize_q8a32(const float *x, pq_q8a32 *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float id = amax != 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            const int q = (int)nearbyintf(x[j] * id);
            y[b].qs[j] = (int8_t)q;
            sum += q;
        }
        y[b].d = round_fp16(amax / 127.0f);
        y[b].sum = sum;
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
        if (is_float(type)) memcpy(dst, x + r * ldx, (size_t)n * 4);
        else if (is_k(type)) quantize_q8a256(x + r * ldx, (pq_q8a256 *)dst, n);
        else quantize_q8a32(x + r * ldx, (pq_q8a32 *)dst, n);
    }
}

void pq_round_activations(int type, const float *x, int64_t ldx, int64_t rows, int64_t n, float *out) {
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + r * ldx;
        float *dst = out + r * n;
        if (is_float(type)) { memcpy(dst, src, (size_t)n * 4); continue; }
        if (is_k(type)) {
            for (int64_t b = 0; b < n / 256; b++) {
                pq_q8a256 q;
                quantize_q8a256(src + 256 * b, &q, 256);
                for (int j = 0; j < 256; j++) dst[256 * b + j] = q.d * (float)q.qs[j];
            }
        } else {
            for (int64_t b = 0; b < n / 32; b++) {
                pq_q8a32 q;
                quantize_q8a32(src + 32 * b, &q, 32);
                for (int j = 0; j < 32; j++) dst[32 * b + j] = q.d * (float)q.qs[j];
            }
        }
    }
}

// Q8_0 {f16 d; i8 qs[32]} · activations.
static float dot_q8_0(int64_t n, const uint8_t *w, const pq_q8a32 *y) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, w += 34) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(w + 2));
        const __m256i a = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(w) * y[b].d), _mm256_cvtepi32_ps(dot_ss8(q, a)), acc);
    }
    return hsum(acc);
}

// Q4_0 {f16 d; u8 qs[16]}: w = d·(q − 8).
static float dot_q4_0(int64_t n, const uint8_t *w, const pq_q8a32 *y) {
    __m256 acc = _mm256_setzero_ps();
    float offset = 0;
    for (int64_t b = 0; b < n / 32; b++, w += 18) {
        const float d = fp16(w) * y[b].d;
        const __m256i q = nibbles16(w + 2);
        const __m256i a = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot_us8(q, a)), acc);
        offset += d * (float)y[b].sum;
    }
    return hsum(acc) - 8.0f * offset;
}

// Q5_0 {f16 d; u8 qh[4]; u8 qs[16]}: w = d·((nibble | bit << 4) − 16).
static float dot_q5_0(int64_t n, const uint8_t *w, const pq_q8a32 *y) {
    __m256 acc = _mm256_setzero_ps();
    float offset = 0;
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    for (int64_t b = 0; b < n / 32; b++, w += 22) {
        const float d = fp16(w) * y[b].d;
        const __m256i q = _mm256_or_si256(nibbles16(w + 6), _mm256_and_si256(bits_to_bytes(w + 2), bit4));
        const __m256i a = _mm256_loadu_si256((const __m256i *)y[b].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(dot_us8(q, a)), acc);
        offset += d * (float)y[b].sum;
    }
    return hsum(acc) - 16.0f * offset;
}

// The 6-bit scales and mins of the 8 sub-blocks of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
// Q4_K {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]} and Q5_K (plus u8 qh[32] before qs):
// w = d·sc·q − dmin·m per 32-element sub-block; chunk j of 64 takes the low nibbles (sub-block
// 2j) then the high nibbles (2j+1) of 32 bytes; Q5_K's fifth bit is bit 2j / 2j+1 of qh.
static float dot_q45_K(int64_t n, const uint8_t *w, const pq_q8a256 *y, int five) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    const int64_t bytes = five ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, w += bytes) {
        uint8_t sc[8], m[8];
        scales_mins_k4(w + 4, sc, m);
        int32_t summ = 0;
        for (int j = 0; j < 8; j++) summ += m[j] * (y[b].bsums[2 * j] + y[b].bsums[2 * j + 1]);
        mins += fp16(w + 2) * y[b].d * (float)summ;
        const uint8_t *qs = w + (five ? 48 : 16);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        const int8_t *a = y[b].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            unpack_q45_K_chunk(qs + 32 * j, hbits, j, five, &lo, &hi);
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a + 64 * j))),
                                                  _mm256_set1_epi16(sc[2 * j]));
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 64 * j + 32))),
                                                  _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(w) * y[b].d), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum(acc) - mins;
}

// Q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: w = d·sc·(q − 32), q = 4 bits of ql | 2 of qh.
// In each half of 128, bytes l of ql/ql+32 and qh give elements l, l+32, l+64, l+96; the scale of
// a 16-element group g is scales[g], so the −32 offset is −32·Σ sc[g]·bsums[g].
static float dot_q6_K(int64_t n, const uint8_t *w, const pq_q8a256 *y) {
    __m256 acc = _mm256_setzero_ps();
    float offsets = 0;
    for (int64_t b = 0; b < n / 256; b++, w += 210) {
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        int32_t offset = 0;
        for (int g = 0; g < 16; g++) offset += sc[g] * y[b].bsums[g];
        __m256i sumi = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            unpack_q6_K_half(ql + 64 * h, qh + 32 * h, q);
            for (int k = 0; k < 4; k++) {
                const int8_t *a = y[b].qs + 128 * h + 32 * k;
                const int g = 8 * h + 2 * k;
                const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                const __m256i p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *)a));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, scale));
            }
        }
        const float d = fp16(w + 208) * y[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        offsets += d * (float)offset;
    }
    return hsum(acc) - 32.0f * offsets;
}

static float dot_f16(int64_t n, const uint16_t *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        acc = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + j))), _mm256_loadu_ps(x + j), acc);
    float s = hsum(acc);
    for (; j < n; j++) s += _cvtsh_ss(w[j]) * x[j];
    return s;
}

static float dot_bf16(int64_t n, const uint16_t *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256i v = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + j))), 16);
        acc = _mm256_fmadd_ps(_mm256_castsi256_ps(v), _mm256_loadu_ps(x + j), acc);
    }
    float s = hsum(acc);
    for (; j < n; j++) s += bf16_to_f32(w[j]) * x[j];
    return s;
}

static inline float dot(int type, int64_t n, const uint8_t *w, const void *x) {
    switch (type) {
    case PQ_Q8_0: return dot_q8_0(n, w, (const pq_q8a32 *)x);
    case PQ_Q5_0: return dot_q5_0(n, w, (const pq_q8a32 *)x);
    case PQ_Q4_0: return dot_q4_0(n, w, (const pq_q8a32 *)x);
    case PQ_Q4_K: return dot_q45_K(n, w, (const pq_q8a256 *)x, 0);
    case PQ_Q5_K: return dot_q45_K(n, w, (const pq_q8a256 *)x, 1);
    case PQ_Q6_K: return dot_q6_K(n, w, (const pq_q8a256 *)x);
    case PQ_F16: return dot_f16(n, (const uint16_t *)w, (const float *)x);
    case PQ_BF16: return dot_bf16(n, (const uint16_t *)w, (const float *)x);
    default: return dot_f32(n, (const float *)w, (const float *)x);
    }
}

void pq_matmul(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
               const void *xq, int64_t xrows, float *y, int64_t ldy) {
    const int64_t xstride = pq_activation_row_bytes(type, n);
    // Weight row outer: its bytes stay in L1 while every activation row passes over them.
    for (int64_t i = 0; i < wrows; i++) {
        const uint8_t *row = (const uint8_t *)w + i * wstride;
        for (int64_t r = 0; r < xrows; r++)
            y[r * ldy + i] = dot(type, n, row, (const char *)xq + r * xstride);
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
