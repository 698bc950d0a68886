// Quantized weight rows times Float32 activations (pq_matmul_f32): the default path of
// WeightMatrix, which keeps results independent of how many rows share a call.
//
// One activation row (decode) takes per-type dot kernels that sum q·x per block and scale once.
// Several rows take the multi-row kernels: each block of 32 weights is unpacked to Float32 in
// registers once and multiplied with up to 8 activation rows, so unpacking is paid once per
// 8 rows rather than once per row.
#include "cquant.h"
#include "blocks.h"

#include <pthread.h>
#include <stdlib.h>

// ---- fp16 scales through a table ------------------------------------------------------------
// A block's fp16 scale, read as a broadcast load from a 256 KB table: no shuffle-port work per
// block, which the one-row kernels are bound by.

static float fp16_table[65536];
static inline __m256 scale8(const uint8_t *p) {
    uint16_t h; memcpy(&h, p, 2);
    return _mm256_broadcast_ss(&fp16_table[h]);
}

// Q5_0's fifth bits: the 8 bits of a byte as 8 int32 lanes of 16·bit − 16 (the −16 offset folded in).
static int32_t q5_high[256][8] __attribute__((aligned(32)));

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void fill_tables(void) {
    for (int i = 0; i < 65536; i++) fp16_table[i] = _cvtsh_ss((uint16_t)i);
    for (int i = 0; i < 256; i++)
        for (int k = 0; k < 8; k++) q5_high[i][k] = ((i >> k) & 1) * 16 - 16;
}

// 8 bytes at p as 8 int32 lanes, sign- or zero-extended (one load-and-extend each).
#define LOAD_I8(p) _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p)))
#define LOAD_U8(p) _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p)))

// ---- one activation row ---------------------------------------------------------------------

// Σ q[j]·x[j] for 32 signed bytes q (in a register) and 32 floats x.
static inline __m256 dot32_i8_f32(__m256i q, const float *x) {
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), _mm256_loadu_ps(x));
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), _mm256_loadu_ps(x + 8), s);
    s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), _mm256_loadu_ps(x + 16), s);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), _mm256_loadu_ps(x + 24), s);
}

// Σ v_k·x[8k…8k+7] for four 8-lane int vectors, as two independent chains.
static inline __m256 dot4_i32_f32(__m256i v0, __m256i v1, __m256i v2, __m256i v3, const float *x) {
    __m256 s0 = _mm256_mul_ps(_mm256_cvtepi32_ps(v0), _mm256_loadu_ps(x));
    __m256 s1 = _mm256_mul_ps(_mm256_cvtepi32_ps(v1), _mm256_loadu_ps(x + 8));
    s0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v2), _mm256_loadu_ps(x + 16), s0);
    s1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v3), _mm256_loadu_ps(x + 24), s1);
    return _mm256_add_ps(s0, s1);
}

// The 32 integer weights of a Q8_0, Q4_0 or Q5_0 block as 4 × 8 int32 lanes (offsets applied):
// Q8_0 {f16 d; i8 qs[32]}; Q4_0 {f16 d; u8 qs[16]}: element j < 16 is the low nibble of qs[j],
// j ≥ 16 the high nibble of qs[j−16], minus 8; Q5_0 {f16 d; u32 qh; u8 qs[16]}: as Q4_0 with
// bit j of qh as the fifth bit, minus 16.
static inline __attribute__((always_inline)) void block32_lanes(int type, const uint8_t *w, __m256i v[4]) {
    const __m256i low4 = _mm256_set1_epi32(15);
    if (type == PQ_Q8_0) {
        v[0] = LOAD_I8(w + 2); v[1] = LOAD_I8(w + 10); v[2] = LOAD_I8(w + 18); v[3] = LOAD_I8(w + 26);
    } else if (type == PQ_Q5_0) {
        uint32_t h; memcpy(&h, w + 2, 4);
        const __m256i a = LOAD_U8(w + 6), c = LOAD_U8(w + 14);
        v[0] = _mm256_add_epi32(_mm256_and_si256(a, low4), _mm256_load_si256((const __m256i *)q5_high[h & 255]));
        v[1] = _mm256_add_epi32(_mm256_and_si256(c, low4), _mm256_load_si256((const __m256i *)q5_high[(h >> 8) & 255]));
        v[2] = _mm256_add_epi32(_mm256_srli_epi32(a, 4), _mm256_load_si256((const __m256i *)q5_high[(h >> 16) & 255]));
        v[3] = _mm256_add_epi32(_mm256_srli_epi32(c, 4), _mm256_load_si256((const __m256i *)q5_high[h >> 24]));
    } else {
        const __m256i eight = _mm256_set1_epi32(8), a = LOAD_U8(w + 2), c = LOAD_U8(w + 10);
        v[0] = _mm256_sub_epi32(_mm256_and_si256(a, low4), eight);
        v[1] = _mm256_sub_epi32(_mm256_and_si256(c, low4), eight);
        v[2] = _mm256_sub_epi32(_mm256_srli_epi32(a, 4), eight);
        v[3] = _mm256_sub_epi32(_mm256_srli_epi32(c, 4), eight);
    }
}

static inline int64_t block32_bytes(int type) { return type == PQ_Q8_0 ? 34 : type == PQ_Q5_0 ? 22 : 18; }

// A Q8_0/Q4_0/Q5_0 row · x: q·x summed per block, then scaled by the block's d.
static inline __attribute__((always_inline)) float dotf_block32(int type, int64_t n, const uint8_t *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 32; b++, w += block32_bytes(type), x += 32) {
        __m256i v[4];
        block32_lanes(type, w, v);
        acc = _mm256_fmadd_ps(scale8(w), dot4_i32_f32(v[0], v[1], v[2], v[3], x), acc);
    }
    return hsum(acc);
}

// Σ q[j]·x[j] over 16 signed bytes and 16 floats, as 8 lanes.
static inline __m256 dot16_i8_f32(__m128i q, const float *x) {
    const __m256 s = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), _mm256_loadu_ps(x));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8))), _mm256_loadu_ps(x + 8), s);
}

static inline __m256 sum32_f32(const float *x) {
    return _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                         _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
}

// Q4_K / Q5_K row · x: Σ_sub d·sc·(q·x) − dmin·m·Σx.
static float dotf_q45_K(int64_t n, const uint8_t *w, const float *x, int five) {
    __m256 acc = _mm256_setzero_ps();
    const int64_t bytes = five ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, w += bytes, x += 256) {
        uint8_t sc[8], m[8];
        scales_mins_k4(w + 4, sc, m);
        const float d = fp16(w), dmin = fp16(w + 2);
        const uint8_t *qs = w + (five ? 48 : 16);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            unpack_q45_K_chunk(qs + 32 * j, hbits, j, five, &lo, &hi);
            const float *x0 = x + 64 * j, *x1 = x0 + 32;
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[2 * j]), dot32_i8_f32(lo, x0), acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * m[2 * j]), sum32_f32(x0), acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[2 * j + 1]), dot32_i8_f32(hi, x1), acc);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(-dmin * m[2 * j + 1]), sum32_f32(x1), acc);
        }
    }
    return hsum(acc);
}

// Q6_K row · x: Σ_g d·sc[g]·((q − 32)·x) over 16-element groups.
static float dotf_q6_K(int64_t n, const uint8_t *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i m32 = _mm256_set1_epi8(32);
    for (int64_t b = 0; b < n / 256; b++, w += 210, x += 256) {
        const uint8_t *ql = w, *qh = w + 128;
        const int8_t *sc = (const int8_t *)(w + 192);
        const float d = fp16(w + 208);
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            unpack_q6_K_half(ql + 64 * h, qh + 32 * h, q);
            for (int k = 0; k < 4; k++) {
                const __m256i v = _mm256_sub_epi8(q[k], m32);
                const float *xk = x + 128 * h + 32 * k;
                const int g = 8 * h + 2 * k;
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[g]), dot16_i8_f32(_mm256_castsi256_si128(v), xk), acc);
                acc = _mm256_fmadd_ps(_mm256_set1_ps(d * sc[g + 1]), dot16_i8_f32(_mm256_extracti128_si256(v, 1), xk + 16), acc);
            }
        }
    }
    return hsum(acc);
}

static float dot_row(int type, int64_t n, const uint8_t *w, const float *x) {
    switch (type) {
    case PQ_Q8_0: return dotf_block32(PQ_Q8_0, n, w, x);
    case PQ_Q5_0: return dotf_block32(PQ_Q5_0, n, w, x);
    case PQ_Q4_0: return dotf_block32(PQ_Q4_0, n, w, x);
    case PQ_Q4_K: return dotf_q45_K(n, w, x, 0);
    case PQ_Q5_K: return dotf_q45_K(n, w, x, 1);
    default: return dotf_q6_K(n, w, x);
    }
}

// ---- several activation rows ----------------------------------------------------------------

// acc[r] += Σ_k v[k] ⊙ x_r[8k…8k+7] for R activation rows `ldx` apart.
static inline __attribute__((always_inline)) void fma_rows(__m256 *acc, const __m256 v[4], const float *x, int64_t ldx, const int R) {
    for (int r = 0; r < R; r++) {
        const float *xr = x + r * ldx;
        acc[r] = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xr), acc[r]);
        acc[r] = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xr + 8), acc[r]);
        acc[r] = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xr + 16), acc[r]);
        acc[r] = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xr + 24), acc[r]);
    }
}

// One weight row against R activation rows; y[r·ldy] receives row r's dot product. Each block
// of 32 weights becomes 4 × 8 Float32 lanes (the dequantized values), then meets every row.
static inline __attribute__((always_inline)) void multi_row(int type, int64_t n, const uint8_t *w, const float *x, int64_t ldx,
                                                            float *y, int64_t ldy, const int R) {
    __m256 acc[8];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    __m256 v[4];
    if (type == PQ_Q8_0 || type == PQ_Q4_0 || type == PQ_Q5_0) {
        for (int64_t b = 0; b < n / 32; b++, w += block32_bytes(type)) {
            const __m256 d = scale8(w);
            __m256i q[4];
            block32_lanes(type, w, q);
            for (int k = 0; k < 4; k++) v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(q[k]), d);
            fma_rows(acc, v, x + 32 * b, ldx, R);
        }
    } else if (type == PQ_Q4_K || type == PQ_Q5_K) {
        const int five = type == PQ_Q5_K;
        const int64_t bytes = five ? 176 : 144;
        const __m256i low4 = _mm256_set1_epi32(15), one = _mm256_set1_epi32(1);
        for (int64_t b = 0; b < n / 256; b++, w += bytes) {
            uint8_t sc[8], m[8];
            scales_mins_k4(w + 4, sc, m);
            const float d = fp16(w), dmin = fp16(w + 2);
            const uint8_t *qh = w + 16, *qs = w + (five ? 48 : 16);
            // Sub-block s (32 elements): nibble (s odd: high) of qs[32·(s/2) + l], fifth bit s of qh[l].
            for (int s = 0; s < 8; s++) {
                const __m256 scale = _mm256_set1_ps(d * sc[s]), min = _mm256_set1_ps(dmin * m[s]);
                const uint8_t *chunk = qs + 32 * (s / 2);
                for (int k = 0; k < 4; k++) {
                    __m256i q = LOAD_U8(chunk + 8 * k);
                    q = (s & 1) ? _mm256_srli_epi32(q, 4) : _mm256_and_si256(q, low4);
                    if (five) q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(LOAD_U8(qh + 8 * k), s), one), 4));
                    v[k] = _mm256_fmsub_ps(_mm256_cvtepi32_ps(q), scale, min);
                }
                fma_rows(acc, v, x + 256 * b + 32 * s, ldx, R);
            }
        }
    } else {  // Q6_K: element 128h + 32k + l is (4 bits of ql | 2 bits of qh) − 32, scaled by sc[8h + 2k + l/16].
        const __m256i low4 = _mm256_set1_epi32(15), low2 = _mm256_set1_epi32(3), m32 = _mm256_set1_epi32(32);
        for (int64_t b = 0; b < n / 256; b++, w += 210) {
            const float d = fp16(w + 208);
            const int8_t *sc = (const int8_t *)(w + 192);
            for (int h = 0; h < 2; h++) {
                const uint8_t *ql = w + 64 * h, *qh = w + 128 + 32 * h;
                for (int k = 0; k < 4; k++) {
                    const uint8_t *lo = ql + 32 * (k & 1);
                    const __m256 s0 = _mm256_set1_ps(d * sc[8 * h + 2 * k]), s1 = _mm256_set1_ps(d * sc[8 * h + 2 * k + 1]);
                    for (int j = 0; j < 4; j++) {
                        __m256i q = LOAD_U8(lo + 8 * j);
                        q = k < 2 ? _mm256_and_si256(q, low4) : _mm256_srli_epi32(q, 4);
                        q = _mm256_or_si256(q, _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(LOAD_U8(qh + 8 * j), 2 * k), low2), 4));
                        v[j] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, m32)), j < 2 ? s0 : s1);
                    }
                    fma_rows(acc, v, x + 256 * b + 128 * h + 32 * k, ldx, R);
                }
            }
        }
    }
    for (int r = 0; r < R; r++) y[r * ldy] = hsum(acc[r]);
}

static void multi_rows(int type, int64_t n, const uint8_t *w, const float *x, int64_t ldx, float *y, int64_t ldy, int R) {
    WITH_ROWS_UP_TO_8(R, multi_row(type, n, w, x, ldx, y, ldy, ROWS))
}

// ---- entry point ----------------------------------------------------------------------------

// Float weights (F32, F16, BF16): each row converted once, then four activation rows per pass.
static void matmul_float_rows(int type, int64_t n, const uint8_t *w, int64_t wstride, int64_t wrows,
                              const float *x, int64_t ldx, int64_t xrows, float *y, int64_t ldy) {
    float stack[4096] __attribute__((aligned(32)));
    float *row = n <= 4096 ? stack : (float *)aligned_alloc(32, (size_t)((n * 4 + 31) / 32 * 32));
    for (int64_t i = 0; i < wrows; i++) {
        const uint8_t *src = w + i * wstride;
        const float *values = (const float *)src;
        if (type != PQ_F32) { pq_dequantize_rows(type, n, src, wstride, 1, row); values = row; }
        int64_t r = 0;
        for (; r + 4 <= xrows; r += 4) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            const float *x0 = x + r * ldx, *x1 = x0 + ldx, *x2 = x1 + ldx, *x3 = x2 + ldx;
            int64_t j = 0;
            for (; j + 8 <= n; j += 8) {
                const __m256 v = _mm256_loadu_ps(values + j);
                a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x0 + j), a0);
                a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x1 + j), a1);
                a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x2 + j), a2);
                a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x3 + j), a3);
            }
            float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
            for (; j < n; j++) { s0 += values[j] * x0[j]; s1 += values[j] * x1[j]; s2 += values[j] * x2[j]; s3 += values[j] * x3[j]; }
            y[r * ldy + i] = s0; y[(r + 1) * ldy + i] = s1; y[(r + 2) * ldy + i] = s2; y[(r + 3) * ldy + i] = s3;
        }
        for (; r < xrows; r++) y[r * ldy + i] = dot_f32(n, values, x + r * ldx);
    }
    if (row != stack) free(row);
}

void pq_matmul_f32(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
                   const float *x, int64_t ldx, int64_t xrows, float *y, int64_t ldy) {
    pthread_once(&tables_once, fill_tables);
    const uint8_t *base = (const uint8_t *)w;
    if (type == PQ_F32 || type == PQ_F16 || type == PQ_BF16) {
        matmul_float_rows(type, n, base, wstride, wrows, x, ldx, xrows, y, ldy);
        return;
    }
    if (xrows == 1) {
        for (int64_t i = 0; i < wrows; i++) y[i] = dot_row(type, n, base + i * wstride, x);
        return;
    }
    // Tiles of 16 weight rows (a few KB, kept in L1) meet 8 activation rows at a time (8·n floats).
    for (int64_t i0 = 0; i0 < wrows; i0 += 16) {
        const int64_t i1 = i0 + 16 < wrows ? i0 + 16 : wrows;
        for (int64_t r0 = 0; r0 < xrows; r0 += 8) {
            const int R = (int)(xrows - r0 < 8 ? xrows - r0 : 8);
            for (int64_t i = i0; i < i1; i++) multi_rows(type, n, base + i * wstride, x + r0 * ldx, ldx, y + r0 * ldy + i, ldy, R);
        }
    }
}
