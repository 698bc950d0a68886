import Foundation
import TensorKit

/// A frozen linear layer W (out, in) with a trainable low-rank update (Hu et al., "LoRA"):
///   y = x·Wᵀ + s · (x·Aᵀ)·Bᵀ,  A (rank, in), B (out, rank), s = alpha / rank (rsLoRA: alpha / √rank)
/// B starts at zero, so before training the layer equals the base model (as PEFT initialises it).
public final class LoRALinear {
    public let weight: Tensor        // (out, in), frozen
    public let a: Tensor             // (rank, in)
    public let b: Tensor             // (out, rank)
    public let gradA: Tensor         // (rank, in)
    public let gradB: Tensor         // (out, rank)
    public let scale: Float
    public var rank: Int { a.rows }
    public var inFeatures: Int { weight.columns }
    public var outFeatures: Int { weight.rows }

    /// A is drawn uniformly in ±1/√in (Kaiming-uniform bound for a = √5, as PEFT's nn.Linear init), seeded.
    public init(weight: Tensor, rank: Int, alpha: Float, rsLoRA: Bool = false, seed: UInt64) {
        self.weight = weight
        let inFeatures = weight.columns
        a = Tensor(shape: [rank, inFeatures])
        b = Tensor(shape: [weight.rows, rank])
        gradA = Tensor(shape: [rank, inFeatures])
        gradB = Tensor(shape: [weight.rows, rank])
        scale = rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
        var state = seed
        let bound = 1 / Float(inFeatures).squareRoot()
        for i in 0..<a.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            a[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * bound
        }
    }

    /// y (rows, out) = x (rows, in) · Wᵀ + s·(x·Aᵀ)·Bᵀ; `hidden` (rows, rank) receives x·Aᵀ for backward.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>) {
        GEMM.matmulTransposedB(x, weight.data, y, m: rows, n: outFeatures, k: inFeatures)
        GEMM.matmulTransposedB(x, a.data, hidden, m: rows, n: rank, k: inFeatures)
        GEMM.matmulTransposedB(hidden, b.data, y, m: rows, n: outFeatures, k: rank, alpha: scale, beta: 1)
    }

    /// Given dy (rows, out): dx = dy·W + s·(dy·B)·A (overwritten), gradB += s·dyᵀ·(x·Aᵀ),
    /// gradA += s·(dy·B)ᵀ·x. `hidden` is the forward's x·Aᵀ; `scratch` holds rows·rank floats.
    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, hidden: UnsafePointer<Float>, rows: Int,
                         dx: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        // scratch (rows, rank) = dy · B
        GEMM.matmul(dy, b.data, scratch, m: rows, n: rank, k: outFeatures)
        GEMM.matmulTransposedA(dy, hidden, gradB.data, m: outFeatures, n: rank, k: rows, alpha: scale, beta: 1)
        GEMM.matmulTransposedA(scratch, x, gradA.data, m: rank, n: inFeatures, k: rows, alpha: scale, beta: 1)
        if let dx {
            GEMM.matmul(dy, weight.data, dx, m: rows, n: inFeatures, k: outFeatures)
            GEMM.matmul(scratch, a.data, dx, m: rows, n: inFeatures, k: rank, alpha: scale, beta: 1)
        }
    }

    /// W + s·B·A: the weight to write into a merged model.
    public func merged() -> Tensor {
        let out = Tensor(shape: [outFeatures, inFeatures])
        out.data.update(from: weight.data, count: weight.count)
        GEMM.matmul(b.data, a.data, out.data, m: outFeatures, n: inFeatures, k: rank, alpha: scale, beta: 1)
        return out
    }

    public func zeroGradients() {
        gradA.data.update(repeating: 0, count: gradA.count)
        gradB.data.update(repeating: 0, count: gradB.count)
    }
}
