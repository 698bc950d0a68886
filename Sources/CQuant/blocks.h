// Helpers shared by the CQuant kernels: fp16 scales, horizontal sums, and unpacking of the
// GGML block layouts (ggml-quants.h) into bytes.
#ifndef CQUANT_BLOCKS_H
#define CQUANT_BLOCKS_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

static inline float fp16(const uint8_t *p) {
    uint16_t h; memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline float round_fp16(float x) { return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block's 12 scale bytes, unpacked in 32-bit
// lanes (byte j of *sc is scale j, of *m min j): scales 0–3 and mins 0–3 are the low 6 bits of
// bytes 0–3 and 4–7; scales 4–7 are the low nibbles of bytes 8–11 with the top 2 bits of bytes
// 0–3 above them, mins 4–7 the high nibbles of bytes 8–11 with the top 2 bits of bytes 4–7.
static inline void scales_mins_k4_words(const uint8_t *p, uint64_t *sc, uint64_t *m) {
    uint32_t a, b, c;
    memcpy(&a, p, 4); memcpy(&b, p + 4, 4); memcpy(&c, p + 8, 4);
    const uint32_t six = 0x3F3F3F3F, four = 0x0F0F0F0F, two = 0x03030303;
    *sc = (uint64_t)(a & six) | (uint64_t)((c & four) | (((a >> 6) & two) << 4)) << 32;
    *m = (uint64_t)(b & six) | (uint64_t)(((c >> 4) & four) | (((b >> 6) & two) << 4)) << 32;
}

// The same as bytes: sc[j], m[j] for sub-block j.
static inline void scales_mins_k4(const uint8_t *s, uint8_t sc[8], uint8_t m[8]) {
    uint64_t sw, mw;
    scales_mins_k4_words(s, &sw, &mw);
    memcpy(sc, &sw, 8);
    memcpy(m, &mw, 8);
}

// Chunk j (64 elements) of a Q4_K/Q5_K block as two 32-byte vectors of values 0–15 (0–31 with
// Q5_K's fifth bit, bits 2j and 2j+1 of `hbits`): sub-blocks 2j (low nibbles) and 2j+1 (high).
static inline void unpack_q45_K_chunk(const uint8_t *qs, __m256i hbits, int j, int five, __m256i *lo, __m256i *hi) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i bits = _mm256_loadu_si256((const __m256i *)qs);
    *lo = _mm256_and_si256(bits, low4);
    *hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low4);
    if (five) {
        *lo = _mm256_or_si256(*lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4));
        *hi = _mm256_or_si256(*hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4));
    }
}

// The 6-bit values (0–63) of one half (128 elements) of a Q6_K block, as 4 × 32 bytes holding
// elements l, l+32, l+64, l+96 of the half for l = 0…31.
static inline void unpack_q6_K_half(const uint8_t *ql, const uint8_t *qh, __m256i q[4]) {
    const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
    const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
    const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
    const __m256i hb = _mm256_loadu_si256((const __m256i *)qh);
    q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(hb, low2), 4));
    q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), low2), 4));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), low2), 4));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                           _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), low2), 4));
}

// Runs CALL with ROWS an integer constant equal to r (1…4 or 1…8; anything else runs as 1), so
// an always-inline kernel taking ROWS is instantiated, unrolled, once per row count.
#define ROWS_CASE(n, CALL) case n: { enum { ROWS = n }; CALL; } break;
#define WITH_ROWS_UP_TO_4(r, CALL) switch (r) { \
    ROWS_CASE(4, CALL) ROWS_CASE(3, CALL) ROWS_CASE(2, CALL) default: { enum { ROWS = 1 }; CALL; } break; }
#define WITH_ROWS_UP_TO_8(r, CALL) switch (r) { \
    ROWS_CASE(8, CALL) ROWS_CASE(7, CALL) ROWS_CASE(6, CALL) ROWS_CASE(5, CALL) \
    ROWS_CASE(4, CALL) ROWS_CASE(3, CALL) ROWS_CASE(2, CALL) default: { enum { ROWS = 1 }; CALL; } break; }

static inline float bf16_to_f32(uint16_t h) { uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f; }

// Σ w[j]·x[j] over n floats.
static inline float dot_f32(int64_t n, const float *w, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), acc);
    float s = hsum(acc);
    for (; j < n; j++) s += w[j] * x[j];
    return s;
}

#endif
