// Causal attention of one query head over one KV head, row by row (inference).
//
// Each query row's numbers are computed in one fixed order (its keys in ascending position,
// dot products in 8-lane chunks), whatever the number of rows in the call: a token's result is
// the same whether its prompt was prefilled in one pass, in chunks after a cached prefix, or
// decoded one token at a time, so shared-prefix caching and batching never change a number.
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>
#include <math.h>

// q · k over d floats: two 8-lane chains, summed at the end (d a multiple of 8 plus a tail).
static inline float dot_head(const float *q, const float *k, int64_t d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= d; j += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(k + j), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j + 8), _mm256_loadu_ps(k + j + 8), a1);
    }
    for (; j + 8 <= d; j += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(k + j), a0);
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; j < d; j++) s += q[j] * k[j];
    return s;
}

void pq_attention(float *out, int64_t outStride, const float *q, int64_t qStride, const float *k, const float *v,
                  int64_t kvStride, int64_t nNew, int64_t nCtx, int64_t headDim, float scale, int64_t window, float *scratch) {
    for (int64_t i = 0; i < nNew; i++) {
        const int64_t pos = nCtx - nNew + i;
        const int64_t lo = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
        const int64_t span = pos - lo + 1;
        const float *qi = q + i * qStride;
        float *p = scratch;
        // p_j = softmax_j(scale · q·k_j) over the visible keys, as ggml's soft_max (sum in double).
        for (int64_t j = 0; j < span; j++) p[j] = scale * dot_head(qi, k + (lo + j) * kvStride, headDim);
        const float max = pq_max(p, span);
        pq_scaled_exp(p, span, max, 1.0f);
        double sum = 0;
        for (int64_t j = 0; j < span; j++) sum += p[j];
        const float inv = (float)(1.0 / sum);
        // out_i = Σ_j p_j · v_j, 64 output columns at a time (8 accumulators), keys in order.
        float *o = out + i * outStride;
        int64_t c = 0;
        for (; c + 64 <= headDim; c += 64) {
            __m256 acc[8];
            for (int t = 0; t < 8; t++) acc[t] = _mm256_setzero_ps();
            for (int64_t j = 0; j < span; j++) {
                const __m256 pj = _mm256_set1_ps(p[j] * inv);
                const float *vj = v + (lo + j) * kvStride + c;
                for (int t = 0; t < 8; t++) acc[t] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(vj + 8 * t), acc[t]);
            }
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(o + c + 8 * t, acc[t]);
        }
        for (; c < headDim; c++) {
            float s = 0;
            for (int64_t j = 0; j < span; j++) s += p[j] * inv * v[(lo + j) * kvStride + c];
            o[c] = s;
        }
    }
}
