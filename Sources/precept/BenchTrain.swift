import ArgumentParser
import Foundation
import ModelKit
import TensorKit
import TrainKit
#if canImport(Glibc)
import Glibc
#endif

extension Precept {
    struct BenchTrain: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bench-train",
            abstract: "Measure LoRA forward+backward throughput and peak memory for a DPO step (build in release).",
            discussion: """
                One step is one preference pair: chosen and rejected sequences of --length tokens each (a quarter \
                prompt, the rest response), the LM-head log-probabilities of the responses, the DPO loss, the backward \
                pass into the LoRA weights and one AdamW update. Reported per phase and as tokens/s over both sequences.
                """)

        @OptionGroup var model: ModelOption
        @Option(help: "Sequence lengths to measure, comma-separated.") var lengths = "256,512"
        @Option(help: "LoRA rank (all seven projections).") var rank = 16
        @Option(help: "Steps per length (the first is a warm-up and not counted).") var steps = 3
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try running {
                let sizes = lengths.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 8 }), steps >= 2, rank >= 1 else {
                    throw ValidationError("--lengths needs values ≥ 8, --steps ≥ 2, --rank ≥ 1")
                }
                let lm = try model.load()
                let c = lm.config
                let adapter = LoRAAdapter(config: LoRAConfig(rank: rank, alpha: Double(2 * rank)), model: c, seed: 1)
                let network = TrainableTransformer(base: lm.transformer, adapter: adapter)
                // Non-zero B so the backward pass does the work of a trained adapter.
                for p in adapter.parameters where p.name.contains("lora_B") { for i in 0..<p.value.count { p.value[i] = 1e-3 } }
                let trainer = DPOTrainer(model: network, config: DPOConfig())
                let optimisers = trainer.parameters.map { _ in AdamW(config: AdamWConfig(learningRate: 1e-5)) }
                var rng = SeededGenerator(seed: 2)
                var results: [[String: Any]] = []
                for length in sizes {
                    func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(1000 + Int(rng.next() % UInt64(c.vocabSize - 2000))) } }
                    let promptLength = length / 4
                    var pair = [PreferenceExample(id: "bench", prompt: tokens(promptLength), chosen: tokens(length - promptLength),
                                                  rejected: tokens(length - promptLength))]
                    trainer.precomputeReference(&pair)
                    var phases: [String: Double] = [:]
                    var total = 0.0
                    for step in 0..<steps {
                        adapter.zeroGradients()
                        let start = Date()
                        let (sequences, rows, targets) = trainer.layout(pair)
                        let acts = network.forward(sequences)
                        let t1 = Date()
                        let (lp, _, lse) = trainer.sequenceLogProbs(acts.hidden, rows: rows, targets: targets)
                        let loss = dpoLoss(.sigmoid, beta: 0.1, policyChosen: lp[0], policyRejected: lp[1],
                                           referenceChosen: pair[0].referenceChosen!, referenceRejected: pair[0].referenceRejected!)
                        let weights = rows[0].map { _ in Float(loss.dChosen) } + rows[1].map { _ in Float(loss.dRejected) }
                        let dHidden = Tensor(shape: [acts.rows, c.hidden])
                        trainer.head.backward(acts.hidden, rows: rows.flatMap { $0 }, targets: targets.flatMap { $0 }, weights: weights, logSumExp: lse, into: dHidden)
                        let t2 = Date()
                        network.backward(acts, dHidden: dHidden)
                        let t3 = Date()
                        for (p, adam) in zip(trainer.parameters, optimisers) { adam.update(p.value.data, gradients: p.gradient.data, count: p.value.count) }
                        let t4 = Date()
                        guard step > 0 else { continue }
                        phases["forward", default: 0] += t1.timeIntervalSince(start)
                        phases["lm_head", default: 0] += t2.timeIntervalSince(t1)
                        phases["backward", default: 0] += t3.timeIntervalSince(t2)
                        phases["optimizer", default: 0] += t4.timeIntervalSince(t3)
                        total += t4.timeIntervalSince(start)
                    }
                    let n = Double(steps - 1)
                    var usage = rusage()
                    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
                    results.append([
                        "length": length, "sequences_per_step": 2, "step_seconds": total / n,
                        "tokens_per_s": Double(2 * length) / (total / n),
                        "phase_seconds": phases.mapValues { $0 / n },
                        "peak_rss_bytes": Int(usage.ru_maxrss) * 1024,
                    ])
                }
                let report: [String: Any] = ["model": model.model, "lora_rank": rank, "trainable_parameters": adapter.parameterCount,
                                             "threads": GEMM.threads, "results": results]
                if json {
                    try printJSON(report)
                } else {
                    print("model \(model.model), LoRA rank \(rank) on q/k/v/o/gate/up/down (\(adapter.parameterCount) trainable parameters)")
                    for r in results {
                        let p = r["phase_seconds"] as! [String: Double]
                        print(String(format: "length %4d: %.1f tokens/s (step %.2f s: forward %.2f, LM head %.2f, backward %.2f, AdamW %.2f), peak RSS %.2f GB",
                                     r["length"] as! Int, r["tokens_per_s"] as! Double, r["step_seconds"] as! Double,
                                     p["forward"] ?? 0, p["lm_head"] ?? 0, p["backward"] ?? 0, p["optimizer"] ?? 0,
                                     Double(r["peak_rss_bytes"] as! Int) / 1e9))
                    }
                }
            }
        }
    }
}
