import Foundation
import ModelKit
import TrainKit

/// A trained reward model loaded from its directory (`training.json` + `adapter/`), scoring
/// responses the way it was trained: same prompt format, last-token score.
public final class RewardModelScorer {
    public let model: LanguageModel
    public let network: TrainableTransformer
    public let head: RewardHead
    public let tokenizer: TrainingTokenizer
    public let directory: URL
    /// The fingerprint of the training run that made it (from summary.json).
    public let fingerprint: String

    /// One row to score: a single response, or a chosen/rejected pair.
    public struct Row: Sendable {
        public var id: String
        public var prompt: String
        public var responses: [String]
    }

    /// `sharing`: an already loaded model, used instead of loading the base again when it is
    /// the reward model's base file.
    public init(directory: URL, sharing: LanguageModel? = nil) throws {
        let url = directory.appendingPathComponent("training.json")
        guard let data = try? Data(contentsOf: url),
              let info = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let path = info["base_model_path"] as? String, info["trainer"] as? String == "rm" else {
            throw TrainingDataError.cannotRead(path: url.path, reason: "not a reward model directory (expected training.json from a reward_model stage or `precept train rm`)")
        }
        if let sharing, URL(fileURLWithPath: sharing.path).standardizedFileURL == URL(fileURLWithPath: path).standardizedFileURL {
            model = sharing
        } else {
            model = try LanguageModel(path: path)
        }
        fingerprint = Self.fingerprint(of: directory)
        self.directory = directory
        let (adapter, head) = try PEFTAdapter.load(directory.appendingPathComponent("adapter"), model: model.config)
        guard let head else {
            throw TrainingDataError.cannotRead(path: directory.appendingPathComponent("adapter").path, reason: "the adapter has no score head")
        }
        self.head = head
        network = TrainableTransformer(base: model.transformer, adapter: adapter)
        network.training = false
        tokenizer = TrainingTokenizer(model: model, style: PromptStyle(rawValue: info["prompt_style"] as? String ?? "") ?? .completion,
                                      system: info["system"] as? String, maxLength: info["max_length"] as? Int ?? 512)
    }

    /// The fingerprint of the training run that wrote a reward model directory ("" if unknown).
    public static func fingerprint(of directory: URL) -> String {
        let summary = try? JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("summary.json"))) as? [String: Any]
        return summary?["fingerprint"] as? String ?? ""
    }

    /// Scores of each row's responses, in one forward pass for the batch.
    public func score(_ rows: [Row]) -> [[Float]] {
        var sequences: [[Int32]] = []
        for row in rows {
            let prompt = tokenizer.prompt(row.prompt)
            for r in row.responses {
                let (p, t) = truncate(prompt: prompt, response: tokenizer.response(r, endOfSequence: false), maxLength: tokenizer.maxLength)
                sequences.append(p + t)
            }
        }
        let acts = network.forward(sequences, keep: false)
        var scores = zip(acts.offsets, sequences).map { head.score(acts.hidden, row: $0 + $1.count - 1) }
        return rows.map { row in
            let s = Array(scores.prefix(row.responses.count))
            scores.removeFirst(row.responses.count)
            return s
        }
    }

    /// Rows from JSONL: `prompt` + `response`, or `prompt` + `chosen` + `rejected` (text or messages).
    public static func readRows(path: String) throws -> [Row] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw TrainingDataError.cannotRead(path: path, reason: error.localizedDescription)
        }
        let pairs = text.contains("\"chosen\"")
        if pairs {
            return try TrainingData.readPreferences(path: path).map { Row(id: $0.id, prompt: $0.prompt, responses: [$0.chosen, $0.rejected]) }
        }
        return try TrainingData.readSFT(path: path).map { Row(id: $0.id, prompt: $0.prompt, responses: [$0.response]) }
    }
}
