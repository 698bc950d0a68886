import Foundation
import ModelKit
import TensorKit

/// The policy for sampling during RL: the base model with the LoRA adapter merged in memory
/// (W' = W + s·B·A) so batched generation with a KV cache runs at inference speed. Only the fused
/// projections an adapter touches are copied; embeddings, norms and the LM head are shared with
/// the base. `refresh()` re-merges after each optimiser step.
public final class RolloutModel {
    public let base: LanguageModel
    public let adapter: LoRAAdapter
    /// The merged model; its weights change in place on `refresh()`.
    public let model: LanguageModel

    public init(base: LanguageModel, adapter: LoRAAdapter) {
        self.base = base
        self.adapter = adapter
        var touched = Set<String>()
        for target in adapter.config.targets { touched.insert(Self.fused(target)) }
        let layers = base.transformer.weights.layers.map { w in
            LayerWeights(attnNorm: w.attnNorm, qkv: touched.contains("qkv") ? w.qkv.denseCopyForUpdate() : w.qkv, qkvBias: w.qkvBias,
                         qNorm: w.qNorm, kNorm: w.kNorm, output: touched.contains("output") ? w.output.denseCopyForUpdate() : w.output,
                         postAttnNorm: w.postAttnNorm, ffnNorm: w.ffnNorm,
                         gateUp: touched.contains("gateUp") ? w.gateUp.denseCopyForUpdate() : w.gateUp,
                         down: touched.contains("down") ? w.down.denseCopyForUpdate() : w.down, postFFNNorm: w.postFFNNorm)
        }
        let b = base.transformer.weights
        model = LanguageModel(base, weights: TransformerWeights(embedding: b.embedding, layers: layers, outputNorm: b.outputNorm,
                                                                lmHead: b.lmHead))
        refresh()
    }

    /// Which fused tensor of a layer a target lives in.
    static func fused(_ target: LoRATargetModule) -> String {
        switch target {
        case .q, .k, .v: "qkv"
        case .o: "output"
        case .gate, .up: "gateUp"
        case .down: "down"
        }
    }

    static func tensor(_ w: LayerWeights, _ target: LoRATargetModule) -> Tensor {
        switch target {
        case .q, .k, .v: w.qkv.dense
        case .o: w.output.dense
        case .gate, .up: w.gateUp.dense
        case .down: w.down.dense
        }
    }

    /// Merged rows = base rows + s·B·A for every adapted projection.
    public func refresh() {
        let c = base.config
        for (l, layer) in adapter.modules.enumerated() {
            let from = base.transformer.weights.layers[l], to = model.transformer.weights.layers[l]
            for (target, m) in layer {
                let offset = target.fusedOffset(c) * m.inFeatures
                let source = Self.tensor(from, target), destination = Self.tensor(to, target)
                (destination.data + offset).update(from: source.data + offset, count: m.outFeatures * m.inFeatures)
                // (out, in) += s·B(out, r)·A(r, in), in the fused tensor's rows.
                GEMM.matmul(m.b.data, m.a.data, destination.data + offset, m: m.outFeatures, n: m.inFeatures, k: m.rank,
                            alpha: m.scale, beta: 1)
                withExtendedLifetime((source, destination, m)) {}
            }
        }
    }
}
