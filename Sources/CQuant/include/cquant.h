// Quantized matrix-vector kernels for GGML block formats (AVX2/FMA/F16C).
//
// Weights stay in the GGUF file's block layout; activations are quantized per block to 8 bits
// first (as llama.cpp does for matrix-vector work): 32-element blocks for Q8_0/Q5_0/Q4_0
// weights, 256-element blocks with 16-element sums for the K-quants.
#ifndef CQUANT_H
#define CQUANT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// GGML type ids (ggml.h) handled here.
enum {
    PQ_F32 = 0, PQ_F16 = 1, PQ_Q4_0 = 2, PQ_Q5_0 = 6, PQ_Q8_0 = 8,
    PQ_Q4_K = 12, PQ_Q5_K = 13, PQ_Q6_K = 14, PQ_BF16 = 30
};

/// An activation block for 32-element weight blocks: x ≈ d·qs.
typedef struct { float d; int8_t qs[32]; } pq_q8a32;
/// An activation block for 256-element (K-quant) blocks: x ≈ d·qs, with sums of each 16 qs.
typedef struct { float d; int16_t bsums[16]; int8_t qs[256]; } pq_q8a256;

/// 1 when `type` has a kernel here.
int pq_supported(int type);
/// Bytes of quantized activations per row of `n` elements, for weights of a quantized `type`.
int64_t pq_activation_row_bytes(int type, int64_t n);
/// Quantizes `rows` rows of `n` floats (row stride `ldx`) into `out`, each row taking
/// `pq_activation_row_bytes(type, n)` bytes.
void pq_quantize_activations(int type, const float *x, int64_t ldx, int64_t rows, int64_t n, void *out);

/// y[r·ldy + i] = dot(weight row i, activation row r) for weight rows [0, wrows) of a K-quant
/// `type` (Q4_K, Q5_K, Q6_K; 32-element block formats take pq_matmul_x8) and activation rows
/// [0, xrows). `w` points at weight row 0, `wstride` bytes apart; `xq` holds quantized
/// activations as `pq_quantize_activations` wrote them. A row's result is bit-identical for
/// every `xrows` (one kernel, the same arithmetic per row).
void pq_matmul(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
               const void *xq, int64_t xrows, float *y, int64_t ldy);

/// y[r·ldy + i] = dot(weight row i, x row r) with Float32 activations (`x`, row stride `ldx`):
/// the weights are unpacked in registers (one row: summed per block, then scaled; several rows:
/// each block dequantized once for up to 8 activation rows), so the result equals a Float32
/// GEMM on the dequantized matrix up to summation order.
void pq_matmul_f32(int type, int64_t n, const void *w, int64_t wstride, int64_t wrows,
                   const float *x, int64_t ldx, int64_t xrows, float *y, int64_t ldy);

/// Bytes of the X8 layout (matmul_x8.c) for `rows` rows of `n` elements: 32-element blocks of 8
/// interleaved rows with Float32 scales, 288 bytes per 8 rows and 32 columns.
int64_t pq_x8_bytes(int64_t rows, int64_t n);
/// Repacks groups [firstGroup, firstGroup + groups) of 8 rows of a Q8_0, Q5_0 or Q4_0 matrix
/// (`rows` rows of `n`, `wstride` bytes apart) into `out` (pq_x8_bytes(rows, n) bytes in all).
void pq_repack_x8(int type, int64_t n, const void *w, int64_t wstride, int64_t rows, int64_t firstGroup, int64_t groups, void *out);
/// y[r·ldy + i − first] = dot(row i, activation row r) for rows i in [first, first + count) of an
/// X8 matrix repacked from `type`, activations from pq_quantize_activations(type, …). A row's
/// result is bit-identical for every `xrows`.
void pq_matmul_x8(int type, int64_t n, const void *packed, int64_t first, int64_t count,
                  const void *xq, int64_t xrows, float *y, int64_t ldy);
/// As pq_matmul_x8 with Float32 activations (`x`, row stride `ldx`): the weights are unpacked
/// in registers and summed per block, then scaled.
void pq_matmul_x8_f32(int64_t n, const void *packed, int64_t first, int64_t count,
                      const float *x, int64_t ldx, int64_t xrows, float *y, int64_t ldy);
/// Rows [first, first + count) of an X8 matrix as Float32 (row stride n).
void pq_dequantize_x8_rows(int64_t n, const void *packed, int64_t first, int64_t count, float *out);
/// Drops the whole pages inside [p, p + bytes) of a read-only file mapping from memory
/// (madvise MADV_DONTNEED); a later read pages them in again.
void pq_release_pages(const void *p, int64_t bytes);

/// Dequantizes `rows` weight rows of `n` elements (`wstride` bytes apart) into `out` (row stride n).
void pq_dequantize_rows(int type, int64_t n, const void *w, int64_t wstride, int64_t rows, float *out);

/// Causal attention of one query head over one KV head: query row i < nNew sits at position
/// nCtx − nNew + i and attends to keys [max(0, pos − window + 1), pos] (window ≤ 0: all keys up
/// to pos). out[i·outStride + c] = Σ_j softmax_j(scale · q_i·k_j) · v_j[c]; rows of q, k and v
/// are qStride, kvStride and kvStride floats apart; `scratch` holds 4 · nCtx floats. Each row is
/// computed in the same order whatever nNew is (chunked prefill and prefix caching are exact).
void pq_attention(float *out, int64_t outStride, const float *q, int64_t qStride, const float *k, const float *v,
                  int64_t kvStride, int64_t nNew, int64_t nCtx, int64_t headDim, float scale, int64_t window, float *scratch);

/// `pq_attention` of query rows rowBegin ..< rowEnd (of nNew) and `heads` query heads that share
/// one KV head (GQA): head h's q and out columns start h·headDim after `q` and `out`. Every row
/// and head gets exactly the numbers `pq_attention` gives it alone; a block of rows × heads reads
/// each tile of keys and values once. `scratch` holds 4 · heads · nCtx floats.
void pq_attention_heads(float *out, int64_t outStride, const float *q, int64_t qStride, const float *k, const float *v,
                        int64_t kvStride, int64_t rowBegin, int64_t rowEnd, int64_t nNew, int64_t nCtx, int64_t heads,
                        int64_t headDim, float scale, int64_t window, float *scratch);

/// Makes malloc map allocations of at least `bytes` and unmap them when freed (glibc's
/// M_MMAP_THRESHOLD). Returns 1 on success.
int pq_map_large_allocations(int64_t bytes);

/// out[j] = exp(x[j]) for j < n, vectorised (relative error < 3e-7; 0 below −87.3).
void pq_exp(const float *x, int64_t n, float *out);
/// The largest of x[0..<n] (−∞ for n = 0).
float pq_max(const float *x, int64_t n);
/// Σ exp(x[j] − shift), summed in Float32 lanes per 256 elements and in Float64 across them.
double pq_sum_exp(const float *x, int64_t n, float shift);
/// A running log-sum-exp over chunks of a row: folds x[0..<n] into (max, Σ exp(· − max));
/// start from (−∞, 0); the result is max + log(sum).
void pq_logsumexp_update(const float *x, int64_t n, float *max, double *sum);
/// out[j] = exp((x[j] − max) / temperature), vectorised as `pq_exp`; returns Σ out[j] (Float64
/// lanes): a sampler's unnormalised weights at a temperature.
double pq_temperature_weights(const float *x, int64_t n, float max, float temperature, float *out);
/// x[j] ← scale · exp(x[j] − shift) (a softmax's gradient row).
void pq_scaled_exp(float *x, int64_t n, float shift, float scale);
/// 1 when the CPU has AVX512-BF16 (and AVX512F/BW/VL), which the pq_bf16_* functions need.
int pq_bf16_supported(void);
/// Bytes `pq_bf16_pack_panels` writes for n rows of k elements.
int64_t pq_bf16_panel_bytes(int64_t n, int64_t k);
/// Rows of x (m × k, rows `ldx` apart) rounded to bfloat16, rows (k rounded up to even) apart.
void pq_bf16_pack_rows(const float *x, int64_t ldx, int64_t m, int64_t k, uint16_t *out);
/// Rows of w (n × k, rows `ldw` apart) rounded to bfloat16, in the kernel's panels of 16 rows.
void pq_bf16_pack_panels(const float *w, int64_t ldw, int64_t n, int64_t k, uint16_t *out);
/// y(m, n) = a · wᵀ (rows `ldy` apart) from packed rows and panels: bfloat16 products summed in
/// Float32 (one thread).
void pq_bf16_gemm(int64_t m, int64_t n, int64_t k, const uint16_t *a, const uint16_t *panels, float *y, int64_t ldy);

/// Gated activations of `pq_gated_activation`.
enum { PQ_GELU_TANH = 0, PQ_SILU = 1 };
/// out[j] = act(gate[j]) · up[j] for j < n, with act SiLU or the tanh-approximated GELU,
/// vectorised with `pq_exp`'s exponential (relative error of act below 3e-7).
void pq_gated_activation(int kind, const float *gate, const float *up, int64_t n, float *out);

/// One part of a pool job: `part` in 0 ..< parts.
typedef void (*pq_part_fn)(void *ctx, int64_t part);
/// Runs fn(ctx, 0 ..< parts) on the calling thread and the pool's workers (one per further core,
/// started on first use), each part exactly once, and returns 1 when all are done. Returns 0,
/// running nothing, when the pool is busy with another caller's job (or a part calls back in).
/// Idle workers poll for the next job for 200 µs (PRECEPT_POOL_SPIN_US overrides it), then sleep.
int pq_pool_run(int64_t parts, pq_part_fn fn, void *ctx);
/// How many workers the pool starts on first use (default: the cores this process may run on,
/// less one). No effect once the pool has started.
void pq_pool_set_workers(int workers);

#ifdef __cplusplus
}
#endif

#endif
