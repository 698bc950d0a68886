import CQuant
import Foundation

/// Gated MLP activations: out = act(gate) ⊙ up, elementwise over `count` values.
public enum GatedActivation: Sendable {
    /// GELU, tanh approximation (Gemma): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    case geluTanh
    /// SiLU / swish (Llama, Qwen): x·σ(x).
    case silu
}

/// Shapes: `gate`, `up`, `out` (count); `out` may alias `gate`. Vectorised (CQuant's
/// `pq_gated_activation`, the exponential of `pq_exp`).
public func gated_activation_forward(
    _ out: UnsafeMutablePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
    count: Int, activation: GatedActivation
) {
    // GELU-tanh as x·σ(2u), u = √(2/π)·x·(1 + 0.044715·x²): ½(1 + tanh u) = 1/(1 + e^(−2u)), one
    // exponential instead of a tanh.
    let kind: Int32
    switch activation {
    case .geluTanh: kind = Int32(PQ_GELU_TANH)
    case .silu: kind = Int32(PQ_SILU)
    }
    pq_gated_activation(kind, gate, up, Int64(count), out)
}

/// Numerically stable softmax of each row in place. Shapes: `x` (rows, cols).
public func softmax_forward(_ x: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
    for r in 0..<rows {
        let row = x + r * cols
        var maxValue = -Float.infinity
        for j in 0..<cols where row[j] > maxValue { maxValue = row[j] }
        guard maxValue > -Float.infinity else { continue }
        var sum: Double = 0  // ggml_float, as ggml's soft_max
        for j in 0..<cols {
            let e = expf(row[j] - maxValue)
            row[j] = e
            sum += Double(e)
        }
        let inv = Float(1 / sum)
        for j in 0..<cols { row[j] *= inv }
    }
}

/// Backward of `gated_activation_forward` (out = act(g)·u):
///   dg = dout · u · act'(g),  du = dout · act(g)
/// SiLU: act' = σ(g)·(1 + g·(1 − σ(g))).
/// GELU-tanh: act = ½g(1 + tanh v), v = c·g·(1 + a·g²), act' = ½(1 + tanh v) + ½g(1 − tanh² v)·c(1 + 3a·g²).
/// Shapes: all (count); `dgate` and `dup` are overwritten.
public func gated_activation_backward(
    dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, dout: UnsafePointer<Float>,
    gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count: Int, activation: GatedActivation
) {
    for i in 0..<count {
        let g = gate[i]
        let value: Float, derivative: Float
        switch activation {
        case .silu:
            let s = 1 / (1 + expf(-g))
            value = g * s
            derivative = s * (1 + g * (1 - s))
        case .geluTanh:
            let c: Float = 0.797_884_560_802_865_4, a: Float = 0.044715
            let t = tanhf(c * g * (1 + a * g * g))
            value = 0.5 * g * (1 + t)
            derivative = 0.5 * (1 + t) + 0.5 * g * (1 - t * t) * c * (1 + 3 * a * g * g)
        }
        dgate[i] = dout[i] * up[i] * derivative
        dup[i] = dout[i] * value
    }
}
