// 32-element block formats (Q8_0, Q5_0, Q4_0) repacked so one AVX2 register holds 8 weight rows:
// the 8-bit-activation kernel then produces 8 outputs per register with no per-block horizontal
// sum, and serves one activation row (decode) and many (prefill) with the same per-row arithmetic.
//
// Layout (X8): per group of 8 weight rows and per block b of 32 columns, 288 bytes: 8 Float32
// scales (one per row), then 8 steps of 32 bytes, step s holding elements 4s…4s+3 of rows 0…7 as
// signed bytes with the format's offset applied (Q4_0: q − 8, Q5_0: q − 16). Rows past the end of
// the matrix are zero. The same interleaving as llama.cpp's repacked AVX2 GEMM formats
// (ggml-cpu "repack", block_q4_0x8), here with a signed-byte, float-scale block.
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define X8_BLOCK 288
#define INLINE static inline __attribute__((always_inline))

int64_t pq_x8_bytes(int64_t rows, int64_t n) { return (rows + 7) / 8 * (n / 32) * X8_BLOCK; }

// The 32 values of a Q8_0/Q5_0/Q4_0 block as signed bytes, offsets applied (ggml-quants.h layouts:
// Q4_0/Q5_0 element j < 16 is the low nibble of qs[j], else the high nibble of qs[j − 16]; Q5_0's
// fifth bit of element j is bit j of qh).
static void block_values(int type, const uint8_t *blk, int8_t v[32]) {
    if (type == PQ_Q8_0) { memcpy(v, blk + 2, 32); return; }
    const int five = type == PQ_Q5_0;
    uint32_t qh = 0;
    if (five) memcpy(&qh, blk + 2, 4);
    const uint8_t *qs = blk + (five ? 6 : 2);
    for (int j = 0; j < 16; j++) {
        const int lo = (qs[j] & 0x0F) | (five ? (int)((qh >> j) & 1) << 4 : 0);
        const int hi = (qs[j] >> 4) | (five ? (int)((qh >> (j + 16)) & 1) << 4 : 0);
        v[j] = (int8_t)(lo - (five ? 16 : 8));
        v[j + 16] = (int8_t)(hi - (five ? 16 : 8));
    }
}

void pq_repack_x8(int type, int64_t n, const void *w, int64_t wstride, int64_t rows, int64_t firstGroup, int64_t groups, void *out) {
    const int64_t nb = n / 32, bytes = type == PQ_Q8_0 ? 34 : type == PQ_Q5_0 ? 22 : 18;
    for (int64_t g = firstGroup; g < firstGroup + groups; g++) {
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *dst = (uint8_t *)out + (g * nb + b) * X8_BLOCK;
            float scales[8];
            int8_t *q = (int8_t *)(dst + 32);
            for (int l = 0; l < 8; l++) {
                const int64_t r = 8 * g + l;
                int8_t v[32];
                if (r < rows) {
                    const uint8_t *blk = (const uint8_t *)w + r * wstride + b * bytes;
                    scales[l] = fp16(blk);
                    block_values(type, blk, v);
                } else {
                    scales[l] = 0;
                    memset(v, 0, 32);
                }
                for (int s = 0; s < 8; s++) memcpy(q + 32 * s + 4 * l, v + 4 * s, 4);
            }
            memcpy(dst, scales, 32);
        }
    }
}

// The 8 rows of group `p` (nb blocks) as Float32 into rows8 (row stride n): per step, each pair
// of rows' 4 bytes become 8 lanes scaled by the two rows' scales.
static void dequantize_group(int64_t nb, int64_t n, const uint8_t *p, float *rows8) {
    for (int64_t b = 0; b < nb; b++, p += X8_BLOCK) {
        const __m256 scales = _mm256_loadu_ps((const float *)p);
        __m256 pair[4];
        for (int k = 0; k < 4; k++)
            pair[k] = _mm256_permutevar8x32_ps(scales, _mm256_setr_epi32(2 * k, 2 * k, 2 * k, 2 * k, 2 * k + 1, 2 * k + 1, 2 * k + 1, 2 * k + 1));
        for (int s = 0; s < 8; s++) {
            for (int k = 0; k < 4; k++) {
                const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(p + 32 + 32 * s + 8 * k)));
                const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q), pair[k]);
                _mm_storeu_ps(rows8 + (2 * k) * n + 32 * b + 4 * s, _mm256_castps256_ps128(v));
                _mm_storeu_ps(rows8 + (2 * k + 1) * n + 32 * b + 4 * s, _mm256_extractf128_ps(v, 1));
            }
        }
    }
}

void pq_dequantize_x8_rows(int64_t n, const void *packed, int64_t first, int64_t count, float *out) {
    const int64_t nb = n / 32;
    float *partial = NULL;
    for (int64_t g = first / 8; g < (first + count + 7) / 8; g++) {
        const uint8_t *p = (const uint8_t *)packed + g * nb * X8_BLOCK;
        const int64_t lo = 8 * g > first ? 8 * g : first, hi = 8 * g + 8 < first + count ? 8 * g + 8 : first + count;
        if (hi - lo == 8) { dequantize_group(nb, n, p, out + (lo - first) * n); continue; }
        if (!partial && !(partial = malloc((size_t)(8 * n) * sizeof(float)))) return;
        dequantize_group(nb, n, p, partial);
        memcpy(out + (lo - first) * n, partial + (lo - 8 * g) * n, (size_t)((hi - lo) * n) * sizeof(float));
    }
    free(partial);
}

// One group of 8 weight rows against R activation rows (`xs` blocks apart): out[r] gets the 8
// results of row r. Per step, |w| × (4 activation bytes with w's sign) gives each weight row a
// pair of 16-bit sums; Q5_0/Q4_0 weights (|w| ≤ 16) keep them in 16 bits for the whole block
// (8 steps · 2 · 16 · 127 < 2^15), Q8_0 widens every step. Per block: acc += Σ · (d_w · d_x).
INLINE void x8_rows(int wide, int64_t nb, const uint8_t *p, const pq_q8a32 *x, int64_t xs, __m256 *out, const int R) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += X8_BLOCK) {
        __m256i sum[4];
        for (int r = 0; r < R; r++) sum[r] = _mm256_setzero_si256();
        for (int s = 0; s < 8; s++) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(p + 32 + 32 * s));
            const __m256i aw = _mm256_sign_epi8(w, w);
            for (int r = 0; r < R; r++) {
                int32_t four;
                memcpy(&four, x[r * xs + b].qs + 4 * s, 4);
                const __m256i prod = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_set1_epi32(four), w));
                sum[r] = wide ? _mm256_add_epi32(sum[r], _mm256_madd_epi16(prod, ones)) : _mm256_add_epi16(sum[r], prod);
            }
        }
        const __m256 ws = _mm256_loadu_ps((const float *)p);
        for (int r = 0; r < R; r++) {
            const __m256i s32 = wide ? sum[r] : _mm256_madd_epi16(sum[r], ones);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32), _mm256_mul_ps(ws, _mm256_set1_ps(x[r * xs + b].d)), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) out[r] = acc[r];
}

static void x8_any(int wide, int64_t nb, const uint8_t *p, const pq_q8a32 *x, int64_t xs, __m256 *out, int R) {
    WITH_ROWS_UP_TO_4(R, x8_rows(wide, nb, p, x, xs, out, ROWS))
}

// Writes lanes [skip, skip + count) of each of R group results to dst + k·ldy (a group's 8
// outputs, trimmed where the requested rows start or end inside it).
static void store_group(const __m256 *out, int R, float *dst, int64_t ldy, int64_t skip, int64_t count) {
    for (int k = 0; k < R; k++) {
        if (count == 8) { _mm256_storeu_ps(dst + k * ldy, out[k]); continue; }
        float lanes[8];
        _mm256_storeu_ps(lanes, out[k]);
        memcpy(dst + k * ldy, lanes + skip, (size_t)count * 4);
    }
}

void pq_matmul_x8(int type, int64_t n, const void *packed, int64_t first, int64_t count,
                  const void *xq, int64_t xrows, float *y, int64_t ldy) {
    const int wide = type == PQ_Q8_0;
    const int64_t nb = n / 32, xs = nb;   // activation rows are nb pq_q8a32 blocks apart
    const pq_q8a32 *x = (const pq_q8a32 *)xq;
    const int64_t g0 = first / 8, g1 = (first + count + 7) / 8;
    // Activation rows in tiles of ≈ 128 KB (kept in L2) meet every group; 4 rows per call.
    int64_t tile = (128 << 10) / (nb * (int64_t)sizeof(pq_q8a32) + 1);
    tile = tile < 4 ? 4 : tile / 4 * 4;
    for (int64_t r0 = 0; r0 < xrows; r0 += tile) {
        const int64_t r1 = r0 + tile < xrows ? r0 + tile : xrows;
        for (int64_t g = g0; g < g1; g++) {
            const uint8_t *p = (const uint8_t *)packed + g * nb * X8_BLOCK;
            // Outputs of this group inside [first, first + count).
            const int64_t lo = 8 * g > first ? 8 * g : first, hi = 8 * g + 8 < first + count ? 8 * g + 8 : first + count;
            for (int64_t r = r0; r < r1; r += 4) {
                const int R = (int)(r1 - r < 4 ? r1 - r : 4);
                __m256 out[4];
                x8_any(wide, nb, p, x + r * xs, xs, out, R);
                store_group(out, R, y + r * ldy + (lo - first), ldy, lo - 8 * g, hi - lo);
            }
        }
    }
}

// ---- Float32 activations on the X8 layout ----------------------------------------------------

// One group of 8 weight rows against R Float32 activation rows (`ldx` apart). Per step, one
// byte shuffle transposes each 128-bit lane's 4 rows × 4 elements, so element k of all 8 rows
// becomes 8 Float32 lanes, shared by the R rows' FMAs; per block, acc += (Σ q·x) · d_w.
INLINE void x8f_rows(int64_t nb, const uint8_t *p, const float *x, int64_t ldx, __m256 *out, const int R) {
    const __m256i transpose = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                               0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    __m256 acc[4];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, p += X8_BLOCK) {
        __m256 block[4];
        for (int r = 0; r < R; r++) block[r] = _mm256_setzero_ps();
        for (int s = 0; s < 8; s++) {
            const __m256i t = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(p + 32 + 32 * s)), transpose);
            for (int k = 0; k < 4; k++) {
                // Dword k of each lane: element 4s + k of rows 0–3 and 4–7.
                const __m256i pair = _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(k, k + 4, 0, 0, 0, 0, 0, 0));
                const __m256 w = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm256_castsi256_si128(pair)));
                for (int r = 0; r < R; r++)
                    block[r] = _mm256_fmadd_ps(w, _mm256_broadcast_ss(x + r * ldx + 32 * b + 4 * s + k), block[r]);
            }
        }
        const __m256 ws = _mm256_loadu_ps((const float *)p);
        for (int r = 0; r < R; r++) acc[r] = _mm256_fmadd_ps(block[r], ws, acc[r]);
    }
    for (int r = 0; r < R; r++) out[r] = acc[r];
}

static void x8f_any(int64_t nb, const uint8_t *p, const float *x, int64_t ldx, __m256 *out, int R) {
    WITH_ROWS_UP_TO_4(R, x8f_rows(nb, p, x, ldx, out, ROWS))
}

void pq_matmul_x8_f32(int64_t n, const void *packed, int64_t first, int64_t count,
                      const float *x, int64_t ldx, int64_t xrows, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const int64_t g0 = first / 8, g1 = (first + count + 7) / 8;
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *p = (const uint8_t *)packed + g * nb * X8_BLOCK;
        const int64_t lo = 8 * g > first ? 8 * g : first, hi = 8 * g + 8 < first + count ? 8 * g + 8 : first + count;
        for (int64_t r = 0; r < xrows; r += 4) {
            const int R = (int)(xrows - r < 4 ? xrows - r : 4);
            __m256 out[4];
            x8f_any(nb, p, x + r * ldx, ldx, out, R);
            store_group(out, R, y + r * ldy + (lo - first), ldy, lo - 8 * g, hi - lo);
        }
    }
}

void pq_release_pages(const void *p, int64_t bytes) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t start = ((uintptr_t)p + page - 1) / page * page, end = ((uintptr_t)p + (uintptr_t)bytes) / page * page;
    if (end > start) madvise((void *)start, end - start, MADV_DONTNEED);
}
