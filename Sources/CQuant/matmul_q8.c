// K-quant weight rows (Q4_K, Q5_K, Q6_K) times 8-bit activations (pq_matmul): the default path
// of WeightMatrix for these types (32-element block formats take matmul_x8.c).
//
// Integer products are summed exactly per 256-element super-block, then scaled in Float32 into
// per-row accumulators. One kernel, instantiated for
// R = 1…3 activation rows, does every row's arithmetic in the same order whatever R is, so a
// row's result is bit-identical whether it is multiplied alone (decode) or with a thousand others
// (prefill, scoring): batch composition never changes a number.
//
// Block layouts follow ggml-quants.h; the integer dot products follow the structure of ggml-cpu's
// x86 kernels (unsigned × signed byte products with _mm256_maddubs_epi16; offsets folded in
// through the activation block sums).
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))

// ---- Q4_K / Q5_K ---------------------------------------------------------------------------
// {f16 d; f16 dmin; u8 scales[12]; (Q5_K: u8 qh[32];) u8 qs[128]}: w = d·sc·q − dmin·m per
// 32-element sub-block. Σ w·x = d·dx·Σ_s sc_s·(q·xq)_s − dmin·dx·Σ_s m_s·(bsum_{2s} + bsum_{2s+1}).

INLINE void rows_q45_K(int five, int64_t n, const uint8_t *w, const pq_q8a256 *x, int64_t xs,
                       float *y, int64_t ldy, const int R) {
    __m256 acc[3];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    const int64_t bytes = five ? 176 : 144;
    for (int64_t b = 0; b < n / 256; b++, w += bytes) {
        uint8_t sc[8], m[8];
        scales_mins_k4(w + 4, sc, m);
        const float d = fp16(w), dmin = fp16(w + 2);
        // The 8 mins, each twice, as 16-bit lanes: one madd with the 16 bsums gives m_s·(bsum pair).
        int64_t m8; memcpy(&m8, m, 8);
        const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(m8));
        const __m256i mins = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
        const uint8_t *qs = w + (five ? 48 : 16);
        const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
        __m256i sumi[3];
        for (int r = 0; r < R; r++) sumi[r] = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i lo, hi;
            unpack_q45_K_chunk(qs + 32 * j, hbits, j, five, &lo, &hi);
            const __m256i slo = _mm256_set1_epi16(sc[2 * j]), shi = _mm256_set1_epi16(sc[2 * j + 1]);
            for (int r = 0; r < R; r++) {
                const int8_t *a = x[r * xs + b].qs + 64 * j;
                const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)a)), slo);
                const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 32))), shi);
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(plo, phi));
            }
        }
        for (int r = 0; r < R; r++) {
            const pq_q8a256 *xb = x + r * xs + b;
            const __m256i msum = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)xb->bsums));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xb->d), _mm256_cvtepi32_ps(msum), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r * ldy] = hsum(acc[r]);
}

// ---- Q6_K ----------------------------------------------------------------------------------
// {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: w = d·sc_g·(q − 32) per 16-element group g, so
// Σ w·x = d·dx·(Σ_g sc_g·(q·xq)_g − 32·Σ_g sc_g·bsum_g), all but the last product in integers.

INLINE void rows_q6_K(int64_t n, const uint8_t *w, const pq_q8a256 *x, int64_t xs, float *y, int64_t ldy, const int R) {
    __m256 acc[3];
    for (int r = 0; r < R; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / 256; b++, w += 210) {
        const int8_t *sc = (const int8_t *)(w + 192);
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        __m256i sumi[3];
        for (int r = 0; r < R; r++) sumi[r] = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q[4];
            unpack_q6_K_half(w + 64 * h, w + 128 + 32 * h, q);
            for (int k = 0; k < 4; k++) {
                const int g = 8 * h + 2 * k;
                const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(sc[g + 1]), _mm_set1_epi16(sc[g]));
                for (int r = 0; r < R; r++) {
                    const __m256i a = _mm256_loadu_si256((const __m256i *)(x[r * xs + b].qs + 128 * h + 32 * k));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], a), scale));
                }
            }
        }
        const float d = fp16(w + 208);
        for (int r = 0; r < R; r++) {
            const pq_q8a256 *xb = x + r * xs + b;
            const __m256i offset = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xb->bsums));
            const __m256i s = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(offset, 5));
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(s), acc[r]);
        }
    }
    for (int r = 0; r < R; r++) y[r * ldy] = hsum(acc[r]);
}

// ---- entry point ---------------------------------------------------------------------------

// One weight row, R activation rows `xstride` bytes apart.
INLINE void rows_kernel(int type, int64_t n, const uint8_t *w, const char *x, int64_t xstride, float *y, int64_t ldy, const int R) {
    switch (type) {
    case PQ_Q4_K: rows_q45_K(0, n, w, (const pq_q8a256 *)x, xstride / (int64_t)sizeof(pq_q8a256), y, ldy, R); break;
    case PQ_Q5_K: rows_q45_K(1, n, w, (const pq_q8a256 *)x, xstride / (int64_t)sizeof(pq_q8a256), y, ldy, R); break;
    default: rows_q6_K(n, w, (const pq_q8a256 *)x, xstride / (int64_t)sizeof(pq_q8a256), y, ldy, R); break;
    }
}

static void rows_any(int type, int64_t n, const uint8_t *w, const char *x, int64_t xstride, float *y, int64_t ldy, int R) {
    switch (R) {
    case 3: rows_kernel(type, n, w, x, xstride, y, ldy, 3); break;
    case 2: rows_kernel(type, n, w, x, xstride, y, ldy, 2); break;
    default: rows_kernel(type, n, w, x, xstride, y, ldy, 1); break;
    }
}

void pq_matmul(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
               const void *xq, int64_t xrows, float *y, int64_t ldy) {
    const uint8_t *base = (const uint8_t *)w;
    const char *xs = (const char *)xq;
    const int64_t xstride = pq_activation_row_bytes(type, n);
    if (xrows == 1) {
        for (int64_t i = 0; i < wrows; i++) rows_kernel(type, n, base + i * wstride, xs, xstride, y + i, ldy, 1);
        return;
    }
    // Activation rows in tiles of ≈ 128 KB (kept in L2) meet tiles of 16 weight rows (kept in L1),
    // G = 3 activation rows per kernel call (4 spill registers: 25 against 37 GMAC/s on one core,
    // 1536 × 4096 Q4_K, 64 rows).
    const int G = 3;
    int64_t tile = (128 << 10) / (xstride > 0 ? xstride : 1);
    tile = tile < G ? G : tile / G * G;
    for (int64_t r0 = 0; r0 < xrows; r0 += tile) {
        const int64_t r1 = r0 + tile < xrows ? r0 + tile : xrows;
        for (int64_t i0 = 0; i0 < wrows; i0 += 16) {
            const int64_t i1 = i0 + 16 < wrows ? i0 + 16 : wrows;
            for (int64_t r = r0; r < r1; r += G) {
                const int R = (int)(r1 - r < G ? r1 - r : G);
                for (int64_t i = i0; i < i1; i++) rows_any(type, n, base + i * wstride, xs + r * xstride, xstride, y + r * ldy + i, ldy, R);
            }
        }
    }
}
