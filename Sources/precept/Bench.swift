import ArgumentParser
import Foundation
import ModelKit
import TensorKit
#if canImport(Glibc)
import Glibc
#endif

extension Precept {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure prefill, batched decode and scoring throughput, and peak memory (build in release).")

        @OptionGroup var model: ModelOption
        @Option(help: "Sequences per batch.") var batch = 1
        @Option(help: "Prompt tokens per sequence.") var promptTokens = 128
        @Option(help: "Tokens to decode per sequence.") var newTokens = 32
        @Option(help: "Run the prefill as a scoring pass does: Float32 activations multiplied in float32 or bfloat16 (bfloat16 needs AVX512-BF16). Default: generation's 8-bit activations.")
        var scoring: String?
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            try running {
                guard batch > 0, promptTokens > 1, newTokens > 0 else { throw ValidationError("batch, prompt-tokens and new-tokens must be positive") }
                let precision = try scoring.map { word in
                    guard let p = ScoringPrecision(rawValue: word) else {
                        throw ValidationError("--scoring `\(word)` is not one of \(ScoringPrecision.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    if p == .bfloat16 && !ScoringPrecision.bfloat16Supported {
                        throw ValidationError("--scoring bfloat16 needs a CPU with AVX512-BF16; this one has none")
                    }
                    return p
                }
                let lm = try model.load()
                let c = lm.config
                var rng = SeededGenerator(seed: 1)
                // Ordinary text tokens (skip the first ids, where special tokens live).
                let prompts = (0..<batch).map { _ in (0..<promptTokens).map { _ in Int32(1000 + Int(rng.next() % UInt64(c.vocabSize - 2000))) } }

                let sgemm = measureSGEMM()

                // Warm-up, as scripts/bench-llamacpp.py does: one short pass pages the weights in
                // and makes the one-time X8 repacks of 32-element block formats (WeightMatrix).
                let warm = lm.transformer.forward([SequenceInput(cache: lm.transformer.makeCache(capacity: 2), tokens: [prompts[0][0]])])
                _ = lm.head.logits(warm.data, rows: 1)

                // Prefill: every prompt in one forward pass, logits for each last position.
                let caches = prompts.map { lm.transformer.makeCache(capacity: $0.count + newTokens) }
                let prefillStart = Date()
                let inputs = zip(caches, prompts).map { SequenceInput(cache: $0, tokens: $1) }
                let hidden = precision.map { lm.transformer.forward(inputs, int8: false, precision: $0) } ?? lm.transformer.forward(inputs)
                let last = Tensor(shape: [batch, c.hidden])
                for b in 0..<batch { (last.data + b * c.hidden).update(from: hidden.row((b + 1) * promptTokens - 1), count: c.hidden) }
                _ = lm.head.logits(last.data, rows: batch, int8: precision == nil ? nil : false)
                let prefillSeconds = Date().timeIntervalSince(prefillStart)
                withExtendedLifetime((hidden, last)) {}
                let tokens = Double(batch * promptTokens)
                let attentionFLOPs = Double(c.layers * 2 * 2 * c.heads * c.headDim) * Double(promptTokens * promptTokens / 2) * Double(batch)
                let prefillFLOPs = 2 * Double(c.matmulParameters(includeHead: false)) * tokens + attentionFLOPs
                    + 2 * Double(c.vocabSize * c.hidden * batch)

                // Batched decode: one token for every sequence per forward pass (greedy).
                let generator = Generator(model: lm)
                let requests = prompts.map { p in
                    GenerationRequest(prompt: p, parameters: SamplingParameters(maxTokens: newTokens, ignoreEOS: true), prefix: nil)
                }
                // Prefill first (not timed as decode), then time the decode loop alone.
                let prefixes = prompts.map { generator.prefill($0) }
                let decodeStart = Date()
                let results = generator.generate(zip(requests, prefixes).map { r, p in
                    var r = r
                    r.prefix = p
                    return r
                })
                let decodeSeconds = Date().timeIntervalSince(decodeStart)
                // Each sequence re-feeds its last prompt token once before decoding: count generated tokens only.
                let generated = Double(results.reduce(0) { $0 + $1.tokens.count })

                // Scoring: half prompt, half continuation per sequence, all in one batch.
                let half = promptTokens / 2
                let scoringStart = Date()
                _ = Scorer(model: lm, precision: precision ?? .float32).score(prompts.map { ScoringRequest(prompt: Array($0[..<half]), continuation: Array($0[half...])) })
                let scoringSeconds = Date().timeIntervalSince(scoringStart)

                var usage = rusage()
                getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
                let report: [String: Any] = [
                    "model": model.model,
                    "batch": batch,
                    "prompt_tokens": promptTokens,
                    "new_tokens": newTokens,
                    "prefill_tokens_per_s": tokens / prefillSeconds,
                    "prefill_gflops": prefillFLOPs / prefillSeconds / 1e9,
                    "decode_tokens_per_s": generated / decodeSeconds,
                    "scoring_tokens_per_s": tokens / scoringSeconds,
                    "sgemm_gflops": sgemm,
                    "peak_rss_bytes": Int(usage.ru_maxrss) * 1024,
                    "threads": GEMM.threads,
                    "prefill_activations": precision?.rawValue ?? (lm.transformer.int8Activations ? "int8" : "float32"),
                ]
                if json {
                    try printJSON(report)
                } else {
                    for key in report.keys.sorted() { print("\(key): \(report[key]!)") }
                }
            }
        }

        /// Best of five 1536³ sgemm runs after a warm-up, in GFLOP/s: the machine's ceiling for
        /// the prefill ratio.
        func measureSGEMM() -> Double {
            let n = 1536
            let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), out = Tensor(shape: [n, n])
            for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.1; b[i] = Float(i % 5) * 0.1 }
            GEMM.matmul(a.data, b.data, out.data, m: n, n: n, k: n)
            var best = 0.0
            for _ in 0..<5 {
                let start = Date()
                GEMM.matmul(a.data, b.data, out.data, m: n, n: n, k: n)
                best = max(best, 2 * Double(n * n * n) / Date().timeIntervalSince(start) / 1e9)
            }
            withExtendedLifetime((a, b, out)) {}
            return best
        }
    }
}
