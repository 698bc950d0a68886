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
        let trained = TrainedDirectory(directory)
        guard let setup = try? trained.setup(), setup.trainer == "rm" else {
            throw TrainingDataError.cannotRead(path: trained.setupURL.path, reason: "not a reward model directory (expected training.json from a reward_model stage or `precept train rm`)")
        }
        if let sharing, URL(fileURLWithPath: sharing.path).standardizedFileURL == URL(fileURLWithPath: setup.baseModelPath).standardizedFileURL {
            model = sharing
        } else {
            model = try LanguageModel(path: setup.baseModelPath)
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
        tokenizer = TrainingTokenizer(model: model, style: setup.promptStyle, system: setup.system, maxLength: setup.maxLength)
    }

    /// The fingerprint of the training run that wrote a reward model directory ("" if unknown).
    public static func fingerprint(of directory: URL) -> String {
        TrainedDirectory(directory).summary()?.fingerprint ?? ""
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
