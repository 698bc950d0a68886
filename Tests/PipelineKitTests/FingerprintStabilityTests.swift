import Foundation
import Testing
import PipelineTestSupport
@testable import PipelineKit

/// A finished training stage is found up to date by a fingerprint over its printed settings
/// (`settingsText`, TrainingJob and PPOJob). Refactoring the spec types (issue 18: one training-job
/// layer) must keep these texts, or every finished run retrains: the hashes below were computed on
/// 2026-12-03 (commit e1f52a0, before any of that refactor) and pin them.
@Suite struct FingerprintStabilityTests {
    static func stage(_ yaml: String) throws -> StageKind {
        let reader = NodeReader(node: try YAMLDocument.parse(data: Data(yaml.utf8), file: "p.yaml"), path: "", file: "p.yaml")
        return try Stage.decode(reader, resolve: { try $0.text() }).kind
    }

    /// The settings fields of the fingerprint, joined as the jobs join their fields.
    static func settings(_ kind: StageKind) -> String? {
        switch kind {
        case .sft(let s):
            return [settingsText("\(s)"), settingsText("\(String(describing: RewardModelSpec?.none))"),
                    settingsText("\(String(describing: DPOSpec?.none))")].joined(separator: "\u{1E}")
        case .rewardModel(let r):
            return [settingsText("\(r.training)"), settingsText("\(String(describing: Optional(r)))"),
                    settingsText("\(String(describing: DPOSpec?.none))")].joined(separator: "\u{1E}")
        case .dpo(let d):
            return [settingsText("\(d.training)"), settingsText("\(String(describing: RewardModelSpec?.none))"),
                    settingsText("\(String(describing: Optional(d)))")].joined(separator: "\u{1E}")
        case .ppo(let p):
            return settingsText("\(p)")
        default:
            return nil
        }
    }

    static let pinned: [(yaml: String, sha: String)] = [
        ("{ id: s, sft: { base: policy, input: revisions } }",
         "6be37305bd59c68b76ee510184ded3a83595fb8c702d7a88f5dc057a2aefb468"),
        ("{ id: s, sft: { base: policy, input: revisions, gate: labels, lora: { rank: 16 }, learning_rate: 5.0e-5, epochs: 2, max_length: 256, eval_fraction: 0.2 } }",
         "097cf8a9249ea69fadad43a6d3bf421bf202d8ccef1e8a94333d3500976e489c"),
        ("{ id: r, reward_model: { base: policy, input: labels, labels: hard, lora: { rank: 8 }, epochs: 2 } }",
         "0afe2b33cf62ee7da0d0894f13977f141cedd14825909cb5d0f6646a68b82fdb"),
        ("{ id: d, dpo: { base: policy, input: labels, beta: 0.1, rpo_alpha: 0.5, learning_rate: 5.0e-5, lora: { rank: 16 }, epochs: 2, max_length: 256, eval_fraction: 0.2 } }",
         "dcb97a2601b82e6ba8e7eee3d4f1d8c45501c983300d8f32b6ecfc51e56c1c1d"),
        ("{ id: d, dpo: { base: policy, input: labels, loss: ipo, lora: { rank: 4, targets: [q, v, down] }, schedule: cosine, merge: none } }",
         "190b846da94954bc978029160d7994f9e619d5270db35af9567fbcfd9dc0047f"),
        ("{ id: p, ppo: { policy: sft, reward_model: rm, algorithm: rloo, kl_estimator: k3, merge: q8_0, missing_eos_penalty: 1.0, monitors: { max_kl: 10, stop_on: [kl, truncation] } } }",
         "b218fb071b0970c139d3f8db4e9df9332e344fae86c16c2163b9416134b9d11b"),
        ("{ id: p, ppo: { policy: sft, reward_model: rm, lora: { rank: 8 }, steps: 16, batch_size: 8, learning_rate: 1.0e-4, kl_coef: 0.05, max_tokens: 64 } }",
         "1d7b36f3ee73ea4373ecdd35b9a4511ff2ee4508eb9864a6258aa3156498c22c"),
    ]

    @Test func trainingSettingsPrintAsBefore() throws {
        for (yaml, sha) in Self.pinned {
            let text = try #require(Self.settings(try Self.stage(yaml)))
            #expect(SHA256.hex(text) == sha, "\(yaml)\n\(text)")
        }
    }
}
