import Foundation

/// RMSNorm (Zhang & Sennrich 2019): y = x / sqrt(mean(x²) + eps) · w, row by row.
///
/// Shapes: `x` (rows, dim), `weight` (dim), `out` (rows, dim); `out` may alias `x`.
/// Gemma's GGUF files store the weight already offset by +1, so every family multiplies by `w`.
public func rmsnorm_forward(
    _ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
    rows: Int, dim: Int, eps: Float
) {
    for r in 0..<rows {
        let xr = x + r * dim, yr = out + r * dim
        // Sum of squares in Double, as ggml's rms_norm does (ggml_float).
        var sum: Double = 0
        var i = 0
        var acc = SIMD4<Double>.zero
        while i + 4 <= dim {
            let v = SIMD4<Double>(Double(xr[i]), Double(xr[i + 1]), Double(xr[i + 2]), Double(xr[i + 3]))
            acc += v * v
            i += 4
        }
        sum = acc.sum()
        while i < dim { sum += Double(xr[i]) * Double(xr[i]); i += 1 }
        let scale = 1 / (Float(sum / Double(dim)) + eps).squareRoot()
        for j in 0..<dim { yr[j] = xr[j] * scale * weight[j] }
    }
}

/// Backward of `rmsnorm_forward`. With r = 1/sqrt(mean(x²) + eps) and y = x·r·w:
///   dw_j += Σ_rows dy_j · x_j · r
///   dx_j  = r · (dy_j·w_j − x_j · r² · mean_k(dy_k·w_k·x_k))
/// Shapes: `dx`, `x`, `dy` (rows, dim); `w`, `dw` (dim). `dx` is overwritten, `dw` accumulated
/// (nil for a frozen weight).
public func rmsnorm_backward(
    _ dx: UnsafeMutablePointer<Float>, _ dw: UnsafeMutablePointer<Float>?, _ dy: UnsafePointer<Float>,
    _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, rows: Int, dim: Int, eps: Float
) {
    for row in 0..<rows {
        let xr = x + row * dim, dyr = dy + row * dim, dxr = dx + row * dim
        var sumSquares: Double = 0
        var dot: Double = 0
        for j in 0..<dim {
            sumSquares += Double(xr[j]) * Double(xr[j])
            dot += Double(dyr[j]) * Double(weight[j]) * Double(xr[j])
        }
        let r = 1 / (Float(sumSquares / Double(dim)) + eps).squareRoot()
        let correction = Float(dot / Double(dim)) * r * r
        for j in 0..<dim {
            dxr[j] = r * (dyr[j] * weight[j] - xr[j] * correction)
            dw?[j] += dyr[j] * xr[j] * r
        }
    }
}
