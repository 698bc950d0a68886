import Foundation
@testable import PipelineKit

/// A backend that records every scoring prompt and answers each call with fixed log-probabilities.
final class RecordingBackend: ModelBackend, @unchecked Sendable {
    let fingerprint = "recorder", promptStyle = PromptStyle.completion
    let answer: [Double]
    private let lock = NSLock()
    private(set) var prompts: [String] = []

    init(answer: [Double]) { self.answer = answer }

    func generate(_ calls: [GenerationCall]) throws -> [GenerationOutput] { [] }

    func score(_ calls: [ScoringCall]) throws -> [[Double]] {
        lock.withLock { prompts += calls.map(\.prompt) }
        return calls.map { _ in answer }
    }
}
