import Foundation
import PipelineKit

/// A backend that records every scoring prompt and answers each call with fixed log-probabilities.
public final class RecordingBackend: ModelBackend, @unchecked Sendable {
    public let fingerprint = "recorder", promptStyle = PromptStyle.completion
    public let answer: [Double]
    private let lock = NSLock()
    public private(set) var prompts: [String] = []

    public init(answer: [Double]) { self.answer = answer }

    public func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] { [] }

    public func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        lock.withLock { prompts += calls.map(\.prompt) }
        return calls.map { _ in answer }
    }
}
