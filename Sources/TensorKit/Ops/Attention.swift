import Foundation

/// Causal scaled dot-product attention for one sequence with grouped KV heads (GQA) and an
/// optional sliding window, against a key/value cache that already holds the new positions.
///
/// Shapes:
/// - `q` (nNew, qStride): heads side by side, head h at columns h·headDim ..< (h+1)·headDim
/// - `k`, `v` (nCtx, kvStride): cache rows for positions 0 ..< nCtx, KV head g at g·headDim
/// - `out` (nNew, outStride): same head layout as `q`
/// - `scratch` at least nNew · nCtx floats
/// Query i sits at position nCtx − nNew + i and sees keys j ≤ its position, and with a window
/// w only keys with position − j < w (llama.cpp's is_masked_swa).
public func attention_forward(
    _ out: UnsafeMutablePointer<Float>, outStride: Int,
    q: UnsafePointer<Float>, qStride: Int,
    k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    nNew: Int, nCtx: Int, heads: Int, kvHeads: Int, headDim: Int,
    scale: Float, window: Int?, scratch: UnsafeMutablePointer<Float>
) {
    precondition(nNew <= nCtx && heads % kvHeads == 0)
    let group = heads / kvHeads
    let (firstPosition, keyStart, span) = attention_keys(nNew: nNew, nCtx: nCtx, window: window)
    for h in 0..<heads {
        let g = h / group
        let qh = q + h * headDim
        let kh = k + keyStart * kvStride + g * headDim
        let vh = v + keyStart * kvStride + g * headDim
        attention_probabilities(scratch, qh: qh, qStride: qStride, kh: kh, kvStride: kvStride, nNew: nNew, span: span,
                                keyStart: keyStart, firstPosition: firstPosition, headDim: headDim, scale: scale, window: window)
        // out_h (nNew, headDim) = P · V_h
        GEMM.strided(transposeA: false, transposeB: false, m: nNew, n: headDim, k: span,
                     scratch, lda: span, vh, ldb: kvStride, out + h * headDim, ldc: outStride)
    }
}

/// Backward of `attention_forward` for one sequence. Probabilities are recomputed from q and k
/// (nothing is kept from the forward pass). Per head, with P = softmax(scale·QKᵀ + mask):
///   dV += Pᵀ·dO,  dP = dO·Vᵀ,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),  dQ = scale·dS·K,  dK += scale·dSᵀ·Q
/// Query heads sharing a KV head (GQA) add into the same dK and dV columns.
/// Shapes: as `attention_forward`, plus `dout` (nNew, outStride), `dq` (nNew, qStride, overwritten
/// in each head's columns), `dk`, `dv` (nCtx, kvStride, accumulated); `scratch` ≥ 2·nNew·nCtx floats.
public func attention_backward(
    dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
    dout: UnsafePointer<Float>, outStride: Int,
    q: UnsafePointer<Float>, qStride: Int,
    k: UnsafePointer<Float>, v: UnsafePointer<Float>, kvStride: Int,
    nNew: Int, nCtx: Int, heads: Int, kvHeads: Int, headDim: Int,
    scale: Float, window: Int?, scratch: UnsafeMutablePointer<Float>
) {
    precondition(nNew <= nCtx && heads % kvHeads == 0)
    let group = heads / kvHeads
    let (firstPosition, keyStart, span) = attention_keys(nNew: nNew, nCtx: nCtx, window: window)
    let p = scratch, dp = scratch + nNew * span
    for h in 0..<heads {
        let g = h / group
        let qh = q + h * headDim, doh = dout + h * headDim
        let kh = k + keyStart * kvStride + g * headDim, vh = v + keyStart * kvStride + g * headDim
        let dkh = dk + keyStart * kvStride + g * headDim, dvh = dv + keyStart * kvStride + g * headDim
        // P (nNew, span), as in the forward pass.
        attention_probabilities(p, qh: qh, qStride: qStride, kh: kh, kvStride: kvStride, nNew: nNew, span: span,
                                keyStart: keyStart, firstPosition: firstPosition, headDim: headDim, scale: scale, window: window)
        // dV_h (span, headDim) += Pᵀ · dO_h
        GEMM.strided(transposeA: true, transposeB: false, m: span, n: headDim, k: nNew,
                     p, lda: span, doh, ldb: outStride, beta: 1, dvh, ldc: kvStride)
        // dP (nNew, span) = dO_h · V_hᵀ
        GEMM.strided(transposeA: false, transposeB: true, m: nNew, n: span, k: headDim,
                     doh, lda: outStride, vh, ldb: kvStride, dp, ldc: span)
        // dS = P ⊙ (dP − Σ_j dP·P), written over dP.
        for i in 0..<nNew {
            let pr = p + i * span, dr = dp + i * span
            var dot: Float = 0
            for j in 0..<span { dot += pr[j] * dr[j] }
            for j in 0..<span { dr[j] = pr[j] * (dr[j] - dot) }
        }
        // dQ_h (nNew, headDim) = scale · dS · K_h
        GEMM.strided(transposeA: false, transposeB: false, m: nNew, n: headDim, k: span, alpha: scale,
                     dp, lda: span, kh, ldb: kvStride, dq + h * headDim, ldc: qStride)
        // dK_h (span, headDim) += scale · dSᵀ · Q_h
        GEMM.strided(transposeA: true, transposeB: false, m: span, n: headDim, k: nNew, alpha: scale,
                     dp, lda: span, qh, ldb: qStride, beta: 1, dkh, ldc: kvStride)
    }
}

/// P (nNew, span) = softmax(scale · Q_h · K_hᵀ) over keys keyStart ..< keyStart + span, with
/// future keys and keys outside the window masked (shared by forward and backward).
private func attention_probabilities(
    _ p: UnsafeMutablePointer<Float>, qh: UnsafePointer<Float>, qStride: Int, kh: UnsafePointer<Float>, kvStride: Int,
    nNew: Int, span: Int, keyStart: Int, firstPosition: Int, headDim: Int, scale: Float, window: Int?
) {
    GEMM.strided(transposeA: false, transposeB: true, m: nNew, n: span, k: headDim, alpha: scale,
                 qh, lda: qStride, kh, ldb: kvStride, p, ldc: span)
    for i in 0..<nNew {
        let position = firstPosition + i
        let row = p + i * span
        for j in 0..<span {
            let key = keyStart + j
            if key > position || (window.map { position - key >= $0 } ?? false) { row[j] = -.infinity }
        }
    }
    softmax_forward(p, rows: nNew, cols: span)
}

/// The first query's position, and the keys any query can see: keys before `keyStart` are
/// outside every query's window.
private func attention_keys(nNew: Int, nCtx: Int, window: Int?) -> (firstPosition: Int, keyStart: Int, span: Int) {
    let firstPosition = nCtx - nNew
    let keyStart = window.map { max(0, firstPosition - $0 + 1) } ?? 0
    return (firstPosition, keyStart, nCtx - keyStart)
}
