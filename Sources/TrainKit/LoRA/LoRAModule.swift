import Foundation
import TensorKit

/// The trainable low-rank update of one frozen projection (Hu et al., "LoRA"):
///   Δy = s · dropout(x)·Aᵀ·Bᵀ,  A (rank, in), B (out, rank), s = alpha / rank (rsLoRA: alpha / √rank)
/// It adds into the columns of a wider output (the fused Q|K|V or gate|up product), so the base
/// projection stays one GEMM. B starts at zero: before training the model equals its base.
public final class LoRAModule {
    public let a: Tensor             // (rank, in)
    public let b: Tensor             // (out, rank)
    public let gradA: Tensor         // (rank, in)
    public let gradB: Tensor         // (out, rank)
    public let scale: Float
    public let dropout: Float
    public var rank: Int { a.rows }
    public var inFeatures: Int { a.columns }
    public var outFeatures: Int { b.rows }
    private var rng: UInt64

    /// A is drawn uniformly in ±1/√in (PEFT's Kaiming-uniform init with a = √5), seeded.
    public init(inFeatures: Int, outFeatures: Int, rank: Int, alpha: Float, rsLoRA: Bool = false,
                dropout: Float = 0, seed: UInt64) {
        a = Tensor(shape: [rank, inFeatures])
        b = Tensor(shape: [outFeatures, rank])
        gradA = Tensor(shape: [rank, inFeatures])
        gradB = Tensor(shape: [outFeatures, rank])
        scale = rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank)
        self.dropout = dropout
        var state = seed
        let bound = 1 / Float(inFeatures).squareRoot()
        for i in 0..<a.count {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            a[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * bound
        }
        rng = seed ^ 0x9E37_79B9_7F4A_7C15
    }

    /// What the backward pass needs from one forward call.
    public struct Saved {
        /// x·Aᵀ (rows, rank), before scaling.
        public let hidden: Tensor
        /// The dropped-out input (rows, in), or nil without dropout (the input itself is used).
        public let droppedInput: Tensor?
        /// Which inputs dropout kept (rows · in), empty without dropout.
        public let kept: [Bool]
    }

    /// y[:, 0..<out] (rows, ldy) += s · dropout(x)·Aᵀ·Bᵀ, x (rows, in). `training: false` skips dropout.
    public func forward(_ x: UnsafePointer<Float>, rows: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
                        training: Bool = true) -> Saved {
        let hidden = Tensor(shape: [rows, rank], zeroed: false)
        var input = x
        var dropped: Tensor?
        var kept: [Bool] = []
        if training && dropout > 0 {
            // Inverted dropout: kept inputs are scaled by 1/(1 − p), as torch.nn.Dropout does.
            let d = Tensor(shape: [rows, inFeatures], zeroed: false)
            let keep = 1 / (1 - dropout)
            kept = [Bool](repeating: false, count: rows * inFeatures)
            for i in 0..<(rows * inFeatures) {
                rng = rng &* 6364136223846793005 &+ 1442695040888963407
                kept[i] = Float(rng >> 40) / Float(1 << 24) >= dropout
                d.data[i] = kept[i] ? x[i] * keep : 0
            }
            dropped = d
            input = UnsafePointer(d.data)
        }
        GEMM.matmulTransposedB(input, a.data, hidden.data, m: rows, n: rank, k: inFeatures)
        GEMM.strided(transposeA: false, transposeB: true, m: rows, n: outFeatures, k: rank, alpha: scale,
                     hidden.data, lda: rank, b.data, ldb: rank, beta: 1, y, ldc: ldy)
        withExtendedLifetime(dropped) {}
        return Saved(hidden: hidden, droppedInput: dropped, kept: kept)
    }

    /// Given dy (rows, ldy) in the module's output columns: gradB += s·dyᵀ·h, gradA += s·(dy·B)ᵀ·x̃,
    /// and with `dx` (rows, in): dx += s·(dy·B)·A (masked like the input when dropout was on).
    public func backward(_ dy: UnsafePointer<Float>, ldy: Int, x: UnsafePointer<Float>, saved: Saved, rows: Int,
                         dx: UnsafeMutablePointer<Float>?) {
        let t = Tensor(shape: [rows, rank], zeroed: false)   // dy · B
        GEMM.strided(transposeA: false, transposeB: false, m: rows, n: rank, k: outFeatures,
                     dy, lda: ldy, b.data, ldb: rank, t.data, ldc: rank)
        GEMM.strided(transposeA: true, transposeB: false, m: outFeatures, n: rank, k: rows, alpha: scale,
                     dy, lda: ldy, saved.hidden.data, ldb: rank, beta: 1, gradB.data, ldc: rank)
        let input = saved.droppedInput.map { UnsafePointer($0.data) } ?? x
        GEMM.matmulTransposedA(t.data, input, gradA.data, m: rank, n: inFeatures, k: rows, alpha: scale, beta: 1)
        guard let dx else { return }
        if saved.droppedInput != nil {
            // d x̃ flows back only where the input was kept, times 1/(1 − p).
            let g = Tensor(shape: [rows, inFeatures], zeroed: false)
            GEMM.matmul(t.data, a.data, g.data, m: rows, n: inFeatures, k: rank, alpha: scale)
            let keep = 1 / (1 - dropout)
            for i in 0..<(rows * inFeatures) where saved.kept[i] { dx[i] += g.data[i] * keep }
        } else {
            GEMM.matmul(t.data, a.data, dx, m: rows, n: inFeatures, k: rank, alpha: scale, beta: 1)
        }
    }

    /// s·B·A (out, in): what merging adds to the base weight.
    public func delta() -> Tensor {
        let out = Tensor(shape: [outFeatures, inFeatures])
        GEMM.matmul(b.data, a.data, out.data, m: outFeatures, n: inFeatures, k: rank, alpha: scale)
        return out
    }

    public func zeroGradients() {
        gradA.data.update(repeating: 0, count: gradA.count)
        gradB.data.update(repeating: 0, count: gradB.count)
    }
}
