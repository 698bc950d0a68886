// Vectorised exponential and the vocabulary-wide reductions the LM head needs (AVX2/FMA):
// the maximum, Σ exp(x − shift) and x ← scale·exp(x − shift) over one row of logits.
//
// exp(x) = 2^n · e^r with n = round(x / ln 2) and r = x − n·ln 2 (ln 2 split in two parts, as
// in Cephes' expf), e^r by a degree-6 Taylor polynomial on |r| ≤ ln 2 / 2: relative error below
// 3e-7 against Float64 exp (VecMathTests compares with Float64 exp).
// Arguments below −87.3 give 0 (expf gives subnormals there), above 88.73 +∞.
#include "cquant.h"

#include <immintrin.h>
#include <math.h>

static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(89.0f);
    const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    // e^r ≈ 1 + r + r²/2 + … + r⁶/720 (Horner)
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    // 2^n: n + 127 in the exponent field. n ∈ [−126, 128]; 2^128 is split as 2^127 · 2.
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
}

// exp(x[k] − shift) for the n < 8 values at x, into out.
static inline void exp_tail(const float *x, int64_t n, float shift, float *out) {
    float lanes[8];
    for (int64_t k = 0; k < 8; k++) lanes[k] = k < n ? x[k] - shift : -INFINITY;
    _mm256_storeu_ps(lanes, exp8(_mm256_loadu_ps(lanes)));
    for (int64_t k = 0; k < n; k++) out[k] = lanes[k];
}

void pq_exp(const float *x, int64_t n, float *out) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, exp8(_mm256_loadu_ps(x + j)));
    if (j < n) exp_tail(x + j, n - j, 0, out + j);
}

float pq_max(const float *x, int64_t n) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, _mm256_max_ps(m0, m1));
    for (int k = 0; k < 8; k++) m = lanes[k] > m ? lanes[k] : m;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

// total + the 8 Float32 lanes of a, widened to Float64 (4 lanes); and the 4 lanes' sum.
static inline __m256d add_widened(__m256d total, __m256 a) {
    total = _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    return _mm256_add_pd(total, _mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
}

static inline double fold(__m256d total) {
    double lanes[4];
    _mm256_storeu_pd(lanes, total);
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

double pq_sum_exp(const float *x, int64_t n, float shift) {
    const __m256 s = _mm256_set1_ps(shift);
    __m256d total = _mm256_setzero_pd();
    int64_t j = 0;
    // Float lanes over blocks of 256 elements (32 terms per lane, each ≤ 1 when shift is the
    // maximum), then summed in Float64.
    while (n - j >= 8) {
        const int64_t end = n - j > 256 ? j + 256 : n;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;
        for (; j + 16 <= end; j += 16) {
            a0 = _mm256_add_ps(a0, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s)));
            a1 = _mm256_add_ps(a1, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), s)));
        }
        if (j + 8 <= end) { a0 = _mm256_add_ps(a0, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s))); j += 8; }
        total = add_widened(total, _mm256_add_ps(a0, a1));
    }
    double sum = fold(total);
    if (j < n) {
        float e[8];
        exp_tail(x + j, n - j, shift, e);
        for (int64_t k = 0; k < n - j; k++) sum += e[k];
    }
    return sum;
}

void pq_scaled_exp(float *x, int64_t n, float shift, float scale) {
    const __m256 s = _mm256_set1_ps(shift), g = _mm256_set1_ps(scale);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(x + j, _mm256_mul_ps(g, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), s))));
    if (j < n) {
        float e[8];
        exp_tail(x + j, n - j, shift, e);
        for (int64_t k = 0; k < n - j; k++) x[j + k] = scale * e[k];
    }
}

void pq_logsumexp_update(const float *x, int64_t n, float *max, double *sum) {
    // Σ ← Σ·e^(m_old − m_new) + Σ_chunk e^(x − m_new)
    const float m = pq_max(x, n), newMax = m > *max ? m : *max;
    const double rescale = *max == -INFINITY ? 0 : (double)expf(*max - newMax);
    *sum = *sum * rescale + pq_sum_exp(x, n, newMax);
    *max = newMax;
}

double pq_temperature_weights(const float *x, int64_t n, float max, float temperature, float *out) {
    const __m256 m = _mm256_set1_ps(max), t = _mm256_set1_ps(temperature);
    __m256d total = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp8(_mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), m), t));
        _mm256_storeu_ps(out + j, e);
        total = add_widened(total, e);
    }
    double sum = fold(total);
    if (j < n) {
        float scaled[8];
        for (int64_t k = 0; k < n - j; k++) scaled[k] = (x[j + k] - max) / temperature;
        exp_tail(scaled, n - j, 0, out + j);
        for (int64_t k = j; k < n; k++) sum += out[k];
    }
    return sum;
}

// act(g) for 8 gates: x·σ(x) (SiLU) or the tanh-approximated GELU written as x·σ(2u),
// u = √(2/π)·x·(1 + 0.044715·x²) (½(1 + tanh u) = σ(2u): one exponential instead of a tanh).
static inline __m256 gated8(int kind, __m256 x) {
    __m256 t = x;
    if (kind == PQ_GELU_TANH) {
        const __m256 x2 = _mm256_mul_ps(x, x);
        const __m256 u = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), x),
                                       _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x2, _mm256_set1_ps(1.0f)));
        t = _mm256_add_ps(u, u);
    }
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), t));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

void pq_gated_activation(int kind, const float *gate, const float *up, int64_t n, float *out) {
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(out + j, _mm256_mul_ps(gated8(kind, _mm256_loadu_ps(gate + j)), _mm256_loadu_ps(up + j)));
    if (j < n) {
        float g[8] = {0}, u[8] = {0}, o[8];
        for (int64_t k = 0; k < n - j; k++) { g[k] = gate[j + k]; u[k] = up[j + k]; }
        _mm256_storeu_ps(o, _mm256_mul_ps(gated8(kind, _mm256_loadu_ps(g)), _mm256_loadu_ps(u)));
        for (int64_t k = 0; k < n - j; k++) out[j + k] = o[k];
    }
}
