// Causal attention of query heads over the KV head they share (GQA), row by row (inference).
//
// Each query row's numbers are computed in one fixed order (its keys in ascending position,
// each dot product one 8-lane chain and a fixed reduction tree, each output element accumulated
// over its keys in order),
// whatever the number of rows or heads in the call: a token's result is the same whether its
// prompt was prefilled in one pass, in chunks after a cached prefix, or decoded one token at a
// time, so shared-prefix caching and batching never change a number.
//
// Speed comes from reuse, not from a different order: a block of ATT_ROWS rows × every head of
// the group reads each tile of ATT_KEYS keys and values once while it is in L1/L2 (a 1000-token
// context of 256-wide heads is 2 MB of K and V, which one row at a time streams from L3); four
// query heads × two keys share each load in the dot products, and four heads each value load.
#include "cquant.h"
#include "blocks.h"

#include <immintrin.h>
#include <math.h>

#define ATT_ROWS 4   // query rows per block
#define ATT_KEYS 32  // keys per tile: 32 KB of K (or V) at headDim 256

// Lane i of the result: the sum of a[i]'s lanes as ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7)),
// the same tree whichever vectors sit beside it.
static inline __m256 reduce8(const __m256 a[8]) {
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// s[t·nk + u] = scale · (q_t · k_u) for nq ≤ 4 query vectors and nk keys (nq·nk ≤ 8): one 8-lane
// chain per dot over the head's 8-column chunks in order, reduce8's tree, then the columns past
// the last full chunk in order. A dot's bits do not depend on nq, nk or its neighbours.
static inline __attribute__((always_inline)) void dots(const float *const *qs, int nq, const float *const *ks, int nk,
                                                        int64_t d, float scale, float *s) {
    __m256 acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= d; j += 8) {
        __m256 kv[8];
        for (int u = 0; u < nk; u++) kv[u] = _mm256_loadu_ps(ks[u] + j);
        for (int t = 0; t < nq; t++) {
            const __m256 qt = _mm256_loadu_ps(qs[t] + j);
            for (int u = 0; u < nk; u++) acc[t * nk + u] = _mm256_fmadd_ps(qt, kv[u], acc[t * nk + u]);
        }
    }
    float r[8];
    _mm256_storeu_ps(r, reduce8(acc));
    for (int t = 0; t < nq; t++)
        for (int u = 0; u < nk; u++) {
            float x = r[t * nk + u];
            for (int64_t i = j; i < d; i++) x += qs[t][i] * ks[u][i];
            s[t * nk + u] = scale * x;
        }
}

// o_t[c] (+)= Σ_{j<n} p_t[j] · v_j[c] for nv ≤ 4 vectors sharing the keys, c < d: each output
// element over its keys in order (one FMA per key), starting from 0 (`first`) or from o_t; each
// value load serves every vector. `width` 8-lane registers of columns per vector and pass
// (nv · width ≤ 8); the width changes no element's arithmetic.
static inline __attribute__((always_inline)) void accumulate_values(float *const *os, const float *const *ps, int nv, int width,
                                                                     const float *v, int64_t kvStride, int64_t n, int64_t d,
                                                                     int first) {
    int64_t c = 0;
    for (; c + 8 * width <= d; c += 8 * width) {
        __m256 acc[8];
        for (int t = 0; t < nv; t++)
            for (int w = 0; w < width; w++)
                acc[t * width + w] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(os[t] + c + 8 * w);
        for (int64_t j = 0; j < n; j++) {
            const float *vj = v + j * kvStride + c;
            __m256 vv[8];
            for (int w = 0; w < width; w++) vv[w] = _mm256_loadu_ps(vj + 8 * w);
            for (int t = 0; t < nv; t++) {
                const __m256 pj = _mm256_broadcast_ss(ps[t] + j);
                for (int w = 0; w < width; w++) acc[t * width + w] = _mm256_fmadd_ps(pj, vv[w], acc[t * width + w]);
            }
        }
        for (int t = 0; t < nv; t++)
            for (int w = 0; w < width; w++) _mm256_storeu_ps(os[t] + c + 8 * w, acc[t * width + w]);
    }
    for (; c + 8 <= d; c += 8) {
        __m256 acc[4];
        for (int t = 0; t < nv; t++) acc[t] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(os[t] + c);
        for (int64_t j = 0; j < n; j++) {
            const __m256 vv = _mm256_loadu_ps(v + j * kvStride + c);
            for (int t = 0; t < nv; t++) acc[t] = _mm256_fmadd_ps(_mm256_broadcast_ss(ps[t] + j), vv, acc[t]);
        }
        for (int t = 0; t < nv; t++) _mm256_storeu_ps(os[t] + c, acc[t]);
    }
    for (; c < d; c++)
        for (int t = 0; t < nv; t++) {
            float x = first ? 0 : os[t][c];
            for (int64_t j = 0; j < n; j++) x = fmaf(ps[t][j], v[j * kvStride + c], x);
            os[t][c] = x;
        }
}

// Keys per dots() call for nq query vectors (nq · keys ≤ 8 accumulators).
static inline int keys_per_call(int nq) { return nq == 1 ? 8 : nq == 2 ? 4 : 2; }

// The two kernels with nq, nk and nv as constants (unrolled, accumulators in registers).
static void dots_dispatch(const float *const *qs, int nq, const float *const *ks, int nk, int64_t d, float scale, float *s) {
#define DOTS(Q, K) case (Q) * 16 + (K): dots(qs, Q, ks, K, d, scale, s); break;
    switch (nq * 16 + nk) {
    DOTS(1, 1) DOTS(1, 2) DOTS(1, 3) DOTS(1, 4) DOTS(1, 5) DOTS(1, 6) DOTS(1, 7) DOTS(1, 8)
    DOTS(2, 1) DOTS(2, 2) DOTS(2, 3) DOTS(2, 4)
    DOTS(3, 1) DOTS(3, 2)
    DOTS(4, 1) DOTS(4, 2)
    }
#undef DOTS
}

static void accumulate_dispatch(float *const *os, const float *const *ps, int nv, const float *v, int64_t kvStride,
                                int64_t n, int64_t d, int first) {
    switch (nv) {
    case 1: accumulate_values(os, ps, 1, 8, v, kvStride, n, d, first); break;
    case 2: accumulate_values(os, ps, 2, 4, v, kvStride, n, d, first); break;
    case 3: accumulate_values(os, ps, 3, 2, v, kvStride, n, d, first); break;
    default: accumulate_values(os, ps, 4, 2, v, kvStride, n, d, first); break;
    }
}

void pq_attention_heads(float *out, int64_t outStride, const float *q, int64_t qStride, const float *k, const float *v,
                        int64_t kvStride, int64_t rowBegin, int64_t rowEnd, int64_t nNew, int64_t nCtx, int64_t heads,
                        int64_t headDim, float scale, int64_t window, float *scratch) {
    for (int64_t b = rowBegin; b < rowEnd; b += ATT_ROWS) {
        const int64_t rows = rowEnd - b < ATT_ROWS ? rowEnd - b : ATT_ROWS;
        const int64_t vectors = rows * heads;  // vector r·heads + h: row b + r, head h
        int64_t lo[ATT_ROWS], hi[ATT_ROWS];    // row r sees keys lo[r] ..< hi[r]
        for (int64_t r = 0; r < rows; r++) {
            const int64_t pos = nCtx - nNew + b + r;
            lo[r] = window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
            hi[r] = pos + 1;
        }
        // Vector x's probabilities over its keys: scratch[x·nCtx + (j − lo)].
        // Scores: p_j = scale · q·k_j, a tile of keys at a time, up to 4 heads × 8 keys per dots() call.
        for (int64_t tile = lo[0]; tile < hi[rows - 1]; tile += ATT_KEYS) {
            const int64_t tileEnd = tile + ATT_KEYS < hi[rows - 1] ? tile + ATT_KEYS : hi[rows - 1];
            for (int64_t r = 0; r < rows; r++) {
                const int64_t a = tile > lo[r] ? tile : lo[r], e = tileEnd < hi[r] ? tileEnd : hi[r];
                const float *qr = q + (b + r) * qStride;
                float *pr = scratch + r * heads * nCtx;  // + (h + t)·nCtx + key − lo[r]
                for (int64_t h = 0; h < heads; h += 4) {
                    const int nq = heads - h < 4 ? (int)(heads - h) : 4;
                    const float *qs[4] = {0};
                    for (int t = 0; t < nq; t++) qs[t] = qr + (h + t) * headDim;
                    const int most = keys_per_call(nq);
                    for (int64_t j = a; j < e; j += most) {
                        const int nk = e - j < most ? (int)(e - j) : most;
                        const float *ks[8];
                        for (int u = 0; u < nk; u++) ks[u] = k + (j + u) * kvStride;
                        float sc[8];
                        dots_dispatch(qs, nq, ks, nk, headDim, scale, sc);
                        for (int t = 0; t < nq; t++)
                            for (int u = 0; u < nk; u++) pr[(h + t) * nCtx + (j + u - lo[r])] = sc[t * nk + u];
                    }
                }
            }
        }
        // Softmax per vector, as ggml's soft_max (sum in double); p_j ← p_j / Σ.
        for (int64_t x = 0; x < vectors; x++) {
            const int64_t r = x / heads, span = hi[r] - lo[r];
            float *p = scratch + x * nCtx;
            const float max = pq_max(p, span);
            pq_scaled_exp(p, span, max, 1.0f);
            double sum = 0;
            for (int64_t j = 0; j < span; j++) sum += p[j];
            const float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j < span; j++) p[j] *= inv;
        }
        // out = Σ_j p_j · v_j, a tile of values at a time, each output element over its keys in order.
        for (int64_t tile = lo[0]; tile < hi[rows - 1]; tile += ATT_KEYS) {
            const int64_t tileEnd = tile + ATT_KEYS < hi[rows - 1] ? tile + ATT_KEYS : hi[rows - 1];
            for (int64_t r = 0; r < rows; r++) {
                const int64_t a = tile > lo[r] ? tile : lo[r], e = tileEnd < hi[r] ? tileEnd : hi[r];
                if (a >= e) continue;
                for (int64_t h = 0; h < heads; h += 4) {
                    const int nv = heads - h < 4 ? (int)(heads - h) : 4;
                    float *os[4] = {0};
                    const float *ps[4] = {0};
                    for (int t = 0; t < nv; t++) {
                        os[t] = out + (b + r) * outStride + (h + t) * headDim;
                        ps[t] = scratch + (r * heads + h + t) * nCtx + (a - lo[r]);
                    }
                    accumulate_dispatch(os, ps, nv, v + a * kvStride, kvStride, e - a, headDim, a == lo[r]);
                }
            }
        }
    }
}

void pq_attention(float *out, int64_t outStride, const float *q, int64_t qStride, const float *k, const float *v,
                  int64_t kvStride, int64_t nNew, int64_t nCtx, int64_t headDim, float scale, int64_t window, float *scratch) {
    pq_attention_heads(out, outStride, q, qStride, k, v, kvStride, 0, nNew, nNew, nCtx, 1, headDim, scale, window, scratch);
}
