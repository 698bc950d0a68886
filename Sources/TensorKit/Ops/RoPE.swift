import Foundation

/// How a rotary embedding pairs the dimensions of a head.
public enum RoPEStyle: Sendable {
    /// GPT-NeoX / Gemma / Qwen2: dimension i pairs with i + d/2.
    case neox
    /// Original Llama (GPT-J style): dimension 2i pairs with 2i + 1.
    case interleaved
}

/// Rotary position embedding parameters (Su et al. 2021), as llama.cpp's ggml_rope_ext applies them.
public struct RoPE: Sendable {
    public var style: RoPEStyle
    /// Rotated dimensions per head (usually the head dim).
    public var dims: Int
    public var base: Float
    /// Linear position scaling (1 = none; 1/factor for "linear" rope scaling).
    public var positionScale: Float
    /// Per-pair frequency divisors (Llama 3.1's rope_freqs), `dims/2` values, or nil.
    public var frequencyFactors: [Float]?

    public init(style: RoPEStyle, dims: Int, base: Float, positionScale: Float = 1, frequencyFactors: [Float]? = nil) {
        self.style = style
        self.dims = dims
        self.base = base
        self.positionScale = positionScale
        self.frequencyFactors = frequencyFactors
    }

    /// cos and sin of every pair's angle at `position`, computed as ggml_rope_cache_init does:
    /// θ starts at the position and is multiplied by base^(−2/dims) in Float per pair, so our
    /// rotations round the same way llama.cpp's do.
    public func angles(at position: Int32, cos cosines: UnsafeMutablePointer<Float>, sin sines: UnsafeMutablePointer<Float>) {
        let thetaScale = powf(base, -2 / Float(dims))
        var theta = Float(position)
        for i in 0..<(dims / 2) {
            let angle = positionScale * (theta / (frequencyFactors?[i] ?? 1))
            cosines[i] = cosf(angle)
            sines[i] = sinf(angle)
            theta *= thetaScale
        }
    }
}

/// Rotates `heads` heads of `headDim` in each row in place; row r sits at `positions[r]`.
/// `inverse` rotates by −θ instead.
///
/// Shapes: `x` (rows, heads · headDim) with row stride `rowStride`; `positions` (rows).
public func rope_forward(
    _ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
    positions: UnsafePointer<Int32>, rope: RoPE, inverse: Bool = false
) {
    let half = rope.dims / 2, direction: Float = inverse ? -1 : 1
    let cosines = UnsafeMutablePointer<Float>.allocate(capacity: half), sines = UnsafeMutablePointer<Float>.allocate(capacity: half)
    defer { cosines.deallocate(); sines.deallocate() }
    for r in 0..<rows {
        rope.angles(at: positions[r], cos: cosines, sin: sines)
        for h in 0..<heads {
            let v = x + r * rowStride + h * headDim
            for i in 0..<half {
                let (a, b) = rope.style == .neox ? (i, i + half) : (2 * i, 2 * i + 1)
                let x0 = v[a], x1 = v[b], s = direction * sines[i]
                v[a] = x0 * cosines[i] - x1 * s
                v[b] = x0 * s + x1 * cosines[i]
            }
        }
    }
}

/// Backward of `rope_forward`: the rotation is orthogonal, so the gradient is rotated by −θ.
/// Shapes as in `rope_forward`; `dx` holds dy on entry and dx on return (in place).
public func rope_backward(
    _ dx: UnsafeMutablePointer<Float>, rows: Int, heads: Int, headDim: Int, rowStride: Int,
    positions: UnsafePointer<Int32>, rope: RoPE
) {
    rope_forward(dx, rows: rows, heads: heads, headDim: headDim, rowStride: rowStride, positions: positions, rope: rope, inverse: true)
}
