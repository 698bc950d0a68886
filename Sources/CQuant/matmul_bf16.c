// Float32 products through bfloat16 dot products (AVX512-BF16 vdpbf16ps), for CPUs that have
// them: Y(m, n) = X(m, k) · W(n, k)ᵀ with X and W rounded to bfloat16 (round to nearest even)
// and every product summed in Float32.
#include "cquant.h"

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

int pq_bf16_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
}

// Rows of X as bfloat16, k rounded up to even (a zero pads an odd k): pairs (2q, 2q+1) adjacent.
BF16 void pq_bf16_pack_rows(const float *x, int64_t ldx, int64_t m, int64_t k, uint16_t *out) {
    const int64_t kp = (k + 1) & ~1LL;
    for (int64_t i = 0; i < m; i++) {
        const float *src = x + i * ldx;
        uint16_t *dst = out + i * kp;
        int64_t j = 0;
        for (; j + 32 <= k; j += 32) {
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j));
            _mm512_storeu_si512(dst + j, (__m512i)v);
        }
        for (; j < kp; j += 16) {
            const int64_t left = k - j;
            const __mmask16 mask = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            const __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, src + j));
            const int64_t store = kp - j < 16 ? kp - j : 16;
            _mm256_mask_storeu_epi16(dst + j, (__mmask16)((1u << store) - 1) | (store == 16 ? 0xFFFF : 0), (__m256i)v);
        }
    }
}

// Panels of 16 rows, their count rounded up to a multiple of 3 (the kernels take 3 at a time).
static int64_t panel_count(int64_t n) { return ((n + 15) / 16 + 2) / 3 * 3; }

int64_t pq_bf16_panel_bytes(int64_t n, int64_t k) { return panel_count(n) * 16 * ((k + 1) & ~1LL) * 2; }

// Rows of W (n × k, ldw floats apart) in panels of 16 rows: panel p holds, per pair q of k, the
// 16 rows' elements (2q, 2q+1) as 32 bfloat16 (64 bytes). Rows past n and an odd k's pad are 0.
// Panel p starts at out + p · 16 · kp; `out` holds pq_bf16_panel_bytes(n, k).
BF16 void pq_bf16_pack_panels(const float *w, int64_t ldw, int64_t n, int64_t k, uint16_t *out) {
    const int64_t kp = (k + 1) & ~1LL, pairs = kp / 2;
    uint16_t row[16][32];   // 16 rows × 16 pairs, then transposed into 16 pair vectors
    for (int64_t p = 0; p < panel_count(n); p++) {
        uint16_t *panel = out + p * 16 * kp;
        for (int64_t q0 = 0; q0 < pairs; q0 += 16) {
            const int64_t qn = pairs - q0 < 16 ? pairs - q0 : 16;
            for (int r = 0; r < 16; r++) {
                const int64_t i = p * 16 + r;
                const int64_t j0 = 2 * q0, left = i < n ? (k - j0 < 32 ? k - j0 : 32) : 0;
                const __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << (left > 0 ? left : 0)) - 1);
                const __mmask16 m1 = left >= 32 ? 0xFFFF : left > 16 ? (__mmask16)((1u << (left - 16)) - 1) : 0;
                const float *src = w + (i < n ? i : 0) * ldw + j0;
                const __m512 a = _mm512_maskz_loadu_ps(m0, src), b = _mm512_maskz_loadu_ps(m1, src + 16);
                _mm512_storeu_si512(row[r], (__m512i)_mm512_cvtne2ps_pbh(b, a));
            }
            // Pair vector q: for r < 16, the 32-bit word q of row r.
            for (int64_t q = 0; q < qn; q++) {
                uint32_t v[16];
                for (int r = 0; r < 16; r++) memcpy(&v[r], &row[r][2 * q], 4);
                memcpy(panel + (q0 + q) * 32, v, 64);
            }
        }
    }
}

// acc[r][v] += A rows r < R (pairs at a + r·kp) · panel v (at b + v·16·kp), over pairs q0 ..< q1.
#define KERNEL(R, V) \
BF16 static void kernel_##R##_##V(const uint16_t *a, int64_t kp, const uint16_t *b, int64_t q0, int64_t q1, \
                                  float *y, int64_t ldy, int64_t cols, int accumulate) { \
    __m512 acc[R][V]; \
    for (int r = 0; r < R; r++) for (int v = 0; v < V; v++) acc[r][v] = _mm512_setzero_ps(); \
    for (int64_t q = q0; q < q1; q++) { \
        __m512bh bv[V]; \
        for (int v = 0; v < V; v++) bv[v] = (__m512bh)_mm512_loadu_si512(b + v * 16 * kp + q * 32); \
        for (int r = 0; r < R; r++) { \
            uint32_t pair; memcpy(&pair, a + r * kp + 2 * q, 4); \
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)pair); \
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]); \
        } \
    } \
    for (int r = 0; r < R; r++) for (int v = 0; v < V; v++) { \
        const int64_t c = cols - 16 * v; \
        if (c <= 0) break; \
        const __mmask16 mask = c >= 16 ? 0xFFFF : (__mmask16)((1u << c) - 1); \
        float *dst = y + r * ldy + 16 * v; \
        const __m512 old = accumulate ? _mm512_maskz_loadu_ps(mask, dst) : _mm512_setzero_ps(); \
        _mm512_mask_storeu_ps(dst, mask, _mm512_add_ps(old, acc[r][v])); \
    } \
}
KERNEL(8, 3) KERNEL(4, 3) KERNEL(2, 3) KERNEL(1, 3)

// R ≤ 8 rows against V = 3 panels (48 columns, `cols` of them stored).
BF16 static void kernel_rows(int R, const uint16_t *a, int64_t kp, const uint16_t *b, int64_t q0, int64_t q1,
                             float *y, int64_t ldy, int64_t cols, int accumulate) {
    while (R > 0) {
        const int take = R >= 8 ? 8 : R >= 4 ? 4 : R >= 2 ? 2 : 1;
        switch (take) {
        case 8: kernel_8_3(a, kp, b, q0, q1, y, ldy, cols, accumulate); break;
        case 4: kernel_4_3(a, kp, b, q0, q1, y, ldy, cols, accumulate); break;
        case 2: kernel_2_3(a, kp, b, q0, q1, y, ldy, cols, accumulate); break;
        default: kernel_1_3(a, kp, b, q0, q1, y, ldy, cols, accumulate); break;
        }
        a += take * kp; y += take * ldy; R -= take;
    }
}

// Y(m, n) = A(m, kp) · Wᵀ with A from pq_bf16_pack_rows and W's panels from pq_bf16_pack_panels.
// Pairs in chunks of 512 (A's 8 rows: 16 KB in L1), panels in groups of 6 (192 KB in L2).
BF16 void pq_bf16_gemm(int64_t m, int64_t n, int64_t k, const uint16_t *a, const uint16_t *panels, float *y, int64_t ldy) {
    const int64_t kp = (k + 1) & ~1LL, pairs = kp / 2, QC = 512, PG = 6;
    const int64_t npanels = panel_count(n);
    if (pairs == 0) {   // k = 0: every sum is empty
        for (int64_t i = 0; i < m; i++) memset(y + i * ldy, 0, (size_t)n * sizeof(float));
        return;
    }
    for (int64_t q0 = 0; q0 < pairs; q0 += QC) {
        const int64_t q1 = q0 + QC < pairs ? q0 + QC : pairs;
        for (int64_t p0 = 0; p0 < npanels; p0 += PG) {
            const int64_t p1 = p0 + PG < npanels ? p0 + PG : npanels;
            for (int64_t i0 = 0; i0 < m; i0 += 8) {
                const int R = (int)(m - i0 < 8 ? m - i0 : 8);
                for (int64_t p = p0; p < p1; p += 3) {
                    const int64_t col0 = 16 * p, cols = n - col0 < 48 ? n - col0 : 48;
                    kernel_rows(R, a + i0 * kp, kp, panels + p * 16 * kp, q0, q1, y + i0 * ldy + col0, ldy, cols, q0 > 0);
                }
            }
        }
    }
}
