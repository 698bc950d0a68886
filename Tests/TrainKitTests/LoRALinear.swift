import Foundation
import TensorKit
@testable import TrainKit

/// A frozen linear layer W (out, in) with a trainable low-rank update:
///   y = x·Wᵀ + s · (x·Aᵀ)·Bᵀ  (see `LoRAModule`).
/// B starts at zero, so before training the layer equals the base model (as PEFT initialises it).
public final class LoRALinear {
    public let weight: Tensor        // (out, in), frozen
    public let module: LoRAModule
    public var a: Tensor { module.a }
    public var b: Tensor { module.b }
    public var gradA: Tensor { module.gradA }
    public var gradB: Tensor { module.gradB }
    public var scale: Float { module.scale }
    public var rank: Int { module.rank }
    public var inFeatures: Int { weight.columns }
    public var outFeatures: Int { weight.rows }

    public init(weight: Tensor, rank: Int, alpha: Float, rsLoRA: Bool = false, seed: UInt64) {
        self.weight = weight
        module = LoRAModule(inFeatures: weight.columns, outFeatures: weight.rows, rank: rank, alpha: alpha,
                            rsLoRA: rsLoRA, seed: seed)
    }

    /// y (rows, out) = x (rows, in) · Wᵀ + s·(x·Aᵀ)·Bᵀ; `hidden` (rows, rank) receives x·Aᵀ for backward.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, hidden: UnsafeMutablePointer<Float>) {
        GEMM.matmulTransposedB(x, weight.data, y, m: rows, n: outFeatures, k: inFeatures)
        let saved = module.forward(x, rows: rows, into: y, ldy: outFeatures, training: false)
        hidden.update(from: saved.hidden.data, count: rows * rank)
    }

    /// Given dy (rows, out): dx = dy·W + s·(dy·B)·A (overwritten), gradB += s·dyᵀ·(x·Aᵀ),
    /// gradA += s·(dy·B)ᵀ·x. `hidden` is the forward's x·Aᵀ.
    public func backward(_ dy: UnsafePointer<Float>, x: UnsafePointer<Float>, hidden: UnsafePointer<Float>, rows: Int,
                         dx: UnsafeMutablePointer<Float>?) {
        let h = Tensor(shape: [rows, rank], zeroed: false)
        h.data.update(from: hidden, count: rows * rank)
        if let dx { GEMM.matmul(dy, weight.data, dx, m: rows, n: inFeatures, k: outFeatures) }
        module.backward(dy, ldy: outFeatures, x: x, saved: .init(hidden: h, droppedInput: nil, kept: []), rows: rows, dx: dx)
    }

    /// W + s·B·A: the weight to write into a merged model.
    public func merged() -> Tensor {
        let out = module.delta()
        for i in 0..<out.count { out.data[i] += weight.data[i] }
        return out
    }

    public func zeroGradients() { module.zeroGradients() }
}
