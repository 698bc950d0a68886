// K-quant weight rows (Q4_K, Q5_K, Q6_K) times 8-bit activations (pq_matmul): the default path
// of WeightMatrix for these types (32-element block formats take matmul_x8.c).
//
// Integer products are summed exactly per 256-element super-block, then scaled in Float32 into
// per-row accumulators. One kernel, instantiated for
// R = 1…8 activation rows, does every row's arithmetic in the same order whatever R is, so a
// row's result is bit-identical whether it is multiplied alone (decode) or with a thousand others
// (prefill, scoring): batch composition never changes a number.
//
// Block layouts follow ggml-quants.h; the integer dot products follow the structure of ggml-cpu's
// x86 kernels (unsigned × signed byte products with _mm256_maddubs_epi16; offsets folded in
// through the activation block sums).
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>

// At most G activation rows per kernel call (see pq_matmul).
#define G 8
#define INLINE static inline __attribute__((always_inline))

// ---- Q4_K / Q5_K ---------------------------------------------------------------------------
// {f16 d; f16 dmin; u8 scales[12]; (Q5_K: u8 qh[32];) u8 qs[128]}: w = d·sc·q − dmin·m per
// 32-element sub-block. Σ w·x = d·dx·Σ_s sc_s·(q·xq)_s − dmin·dx·Σ_s m_s·(bsum_{2s} + bsum_{2s+1}).

// vpshufb masks: in each 128-bit lane, 16-bit word w repeated (w = 0…7).
static const uint8_t word_masks[8][32] __attribute__((aligned(32))) = {
#define W(w) {2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1, \
               2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1,2*w,2*w+1}
    W(0), W(1), W(2), W(3), W(4), W(5), W(6), W(7)
#undef W
};

INLINE __m256i word_broadcast(__m256i v, int w) {
    return _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i *)word_masks[w]));
}

// One block of a weight row against activation block rows x[r·xs] (r < R), accumulated into
// acc[8r…8r+7]. Every row's arithmetic is the same whatever R is. The accumulators live in memory
// (one load and store per row and block), so the R integer sums and the unpacked weights keep the
// 16 registers.
INLINE void block_q45_K(int five, const uint8_t *w, const pq_q8a256 *x, int64_t xs, float *acc, const int R) {
    uint64_t sc8, m8;
    scales_mins_k4_words(w + 4, &sc8, &m8);
    const float d = fp16(w), dmin = fp16(w + 2);
    const __m128i sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((int64_t)sc8));
    const __m256i scales = _mm256_set_m128i(sc16, sc16);
    const uint8_t *qs = w + (five ? 48 : 16);
    const __m256i hbits = five ? _mm256_loadu_si256((const __m256i *)(w + 16)) : _mm256_setzero_si256();
    __m256i sumi[G];
    for (int r = 0; r < R; r++) sumi[r] = _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        __m256i lo, hi;
        unpack_q45_K_chunk(qs + 32 * j, hbits, j, five, &lo, &hi);
        const __m256i slo = word_broadcast(scales, 2 * j), shi = word_broadcast(scales, 2 * j + 1);
        for (int r = 0; r < R; r++) {
            const int8_t *a = x[r * xs].qs + 64 * j;
            const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)a)), slo);
            const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a + 32))), shi);
            sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(plo, phi));
        }
    }
    const __m128i m16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((int64_t)m8));
    const __m256i mins = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
    for (int r = 0; r < R; r++) {
        const pq_q8a256 *xb = x + r * xs;
        const __m256i msum = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)xb->bsums));
        __m256 a = _mm256_load_ps(acc + 8 * r);
        a = _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(sumi[r]), a);
        a = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * xb->d), _mm256_cvtepi32_ps(msum), a);
        _mm256_store_ps(acc + 8 * r, a);
    }
}

// ---- Q6_K ----------------------------------------------------------------------------------
// {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}: w = d·sc_g·(q − 32) per 16-element group g, so
// Σ w·x = d·dx·(Σ_g sc_g·(q·xq)_g − 32·Σ_g sc_g·bsum_g), all but the last product in integers.

// vpshufb masks for group pair (2k, 2k+1) of a half: word 2k in the low lane, 2k+1 in the high.
static const uint8_t pair_masks[4][32] __attribute__((aligned(32))) = {
#define P(k) {4*k,4*k+1,4*k,4*k+1,4*k,4*k+1,4*k,4*k+1,4*k,4*k+1,4*k,4*k+1,4*k,4*k+1,4*k,4*k+1, \
               4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3,4*k+2,4*k+3}
    P(0), P(1), P(2), P(3)
#undef P
};

INLINE void block_q6_K(const uint8_t *w, const pq_q8a256 *x, int64_t xs, float *acc, const int R) {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 192)));
    __m256i sumi[G];
    for (int r = 0; r < R; r++) sumi[r] = _mm256_setzero_si256();
    for (int h = 0; h < 2; h++) {
        __m256i q[4];
        unpack_q6_K_half(w + 64 * h, w + 128 + 32 * h, q);
        // Scales 8h…8h+7 as 16-bit words in both lanes.
        const __m256i half = h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
        for (int g = 0; g < 4; g++) {
            // Groups 8h+2g (low lane) and 8h+2g+1 (high lane).
            const __m256i scale = _mm256_shuffle_epi8(half, _mm256_load_si256((const __m256i *)pair_masks[g]));
            for (int r = 0; r < R; r++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(x[r * xs].qs + 128 * h + 32 * g));
                sumi[r] = _mm256_add_epi32(sumi[r], _mm256_madd_epi16(_mm256_maddubs_epi16(q[g], a), scale));
            }
        }
    }
    const float d = fp16(w + 208);
    for (int r = 0; r < R; r++) {
        const pq_q8a256 *xb = x + r * xs;
        const __m256i offset = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xb->bsums));
        const __m256i s = _mm256_sub_epi32(sumi[r], _mm256_slli_epi32(offset, 5));
        _mm256_store_ps(acc + 8 * r, _mm256_fmadd_ps(_mm256_set1_ps(d * xb->d), _mm256_cvtepi32_ps(s), _mm256_load_ps(acc + 8 * r)));
    }
}

// One weight row × R activation rows (`xs` blocks apart): the block loop, then y[r·ldy] = Σ of
// row r's accumulator.
INLINE void rows_kernel(const int type, int64_t n, const uint8_t *w, const pq_q8a256 *x, int64_t xs,
                        float *y, int64_t ldy, const int R) {
    float acc[8 * G] __attribute__((aligned(32)));
    for (int r = 0; r < R; r++) _mm256_store_ps(acc + 8 * r, _mm256_setzero_ps());
    const int64_t bytes = type == PQ_Q4_K ? 144 : type == PQ_Q5_K ? 176 : 210;
    for (int64_t b = 0; b < n / 256; b++) {
        switch (type) {
        case PQ_Q4_K: block_q45_K(0, w + b * bytes, x + b, xs, acc, R); break;
        case PQ_Q5_K: block_q45_K(1, w + b * bytes, x + b, xs, acc, R); break;
        default: block_q6_K(w + b * bytes, x + b, xs, acc, R); break;
        }
    }
    for (int r = 0; r < R; r++) y[r * ldy] = hsum(_mm256_load_ps(acc + 8 * r));
}

// rows_kernel with the type a constant in each instantiation (no switch in the block loop).
INLINE void rows_typed(int type, int64_t n, const uint8_t *w, const pq_q8a256 *x, int64_t xs, float *y, int64_t ldy, const int R) {
    switch (type) {
    case PQ_Q4_K: rows_kernel(PQ_Q4_K, n, w, x, xs, y, ldy, R); break;
    case PQ_Q5_K: rows_kernel(PQ_Q5_K, n, w, x, xs, y, ldy, R); break;
    default: rows_kernel(PQ_Q6_K, n, w, x, xs, y, ldy, R); break;
    }
}

// ---- entry point ---------------------------------------------------------------------------

static void rows_any(int type, int64_t n, const uint8_t *w, const char *x, int64_t xstride, float *y, int64_t ldy, int R) {
    const pq_q8a256 *xa = (const pq_q8a256 *)x;
    const int64_t xs = xstride / (int64_t)sizeof(pq_q8a256);
    WITH_ROWS_UP_TO_8(R, rows_typed(type, n, w, xa, xs, y, ldy, ROWS))
}

void pq_matmul(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
               const void *xq, int64_t xrows, float *y, int64_t ldy) {
    const uint8_t *base = (const uint8_t *)w;
    const char *xs = (const char *)xq;
    const int64_t xstride = pq_activation_row_bytes(type, n);
    if (xrows == 1) {
        for (int64_t i = 0; i < wrows; i++) rows_typed(type, n, base + i * wstride, (const pq_q8a256 *)xq, 0, y + i, ldy, 1);
        return;
    }
    // Activation rows in tiles of ≈ 128 KB (kept in L2) meet tiles of 16 weight rows (kept in L1),
    // G = 8 activation rows per kernel call. One core, 4096 × 1536, 64 rows: Q4_K 49 → 68 GMAC/s,
    // Q6_K 48 → 62, against G = 3 with the accumulators in registers.
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
