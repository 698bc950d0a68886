import Foundation
import TensorKit

/// Rescales all gradients so their global L2 norm is at most `maxNorm` (no clipping for
/// `maxNorm` ≤ 0); returns the norm before (PyTorch's `clip_grad_norm_`).
public func clipGradientNorm(_ parameters: [(name: String, value: Tensor, gradient: Tensor)], maxNorm: Double) -> Double {
    var sum = 0.0
    for p in parameters { for i in 0..<p.gradient.count { sum += Double(p.gradient.data[i]) * Double(p.gradient.data[i]) } }
    let norm = sum.squareRoot()
    if maxNorm > 0 && norm > maxNorm {
        let scale = Float(maxNorm / (norm + 1e-6))
        for p in parameters { for i in 0..<p.gradient.count { p.gradient.data[i] *= scale } }
    }
    return norm
}
