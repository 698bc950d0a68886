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
