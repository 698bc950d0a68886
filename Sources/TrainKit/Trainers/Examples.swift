import Foundation

/// A prompt and a response to imitate (SFT): the loss covers the response tokens only.
public struct SFTExample: Sendable, Equatable {
    public var id: String
    public var prompt: [Int32]
    public var response: [Int32]

    public init(id: String, prompt: [Int32], response: [Int32]) {
        self.id = id
        self.prompt = prompt
        self.response = response
    }
}

/// A prompt with a preferred (`chosen`) and a dispreferred (`rejected`) response.
public struct PreferenceExample: Sendable, Equatable {
    public var id: String
    public var prompt: [Int32]
    public var chosen: [Int32]
    public var rejected: [Int32]
    /// P(chosen ≻ rejected): the judge's soft label (1 for a hard label).
    public var probability: Double
    /// Reference-model log-probabilities of the two responses (DPO fills these once per dataset).
    public var referenceChosen: Double?
    public var referenceRejected: Double?

    public init(id: String, prompt: [Int32], chosen: [Int32], rejected: [Int32], probability: Double = 1) {
        self.id = id
        self.prompt = prompt
        self.chosen = chosen
        self.rejected = rejected
        self.probability = probability
    }
}

/// Cuts prompt + response to `maxLength` tokens as TRL does: the response is cut at its end,
/// down to no less than half the budget, then the prompt keeps its last tokens.
public func truncate(prompt: [Int32], response: [Int32], maxLength: Int) -> (prompt: [Int32], response: [Int32]) {
    guard prompt.count + response.count > maxLength else { return (prompt, response) }
    let responseBudget = max(maxLength - prompt.count, maxLength / 2)
    let r = Array(response.prefix(responseBudget))
    let p = Array(prompt.suffix(max(1, maxLength - r.count)))
    return (p, r)
}

/// The stacked rows and targets that score `response` after `prompt` in one sequence starting
/// at row `offset`: the hidden state at position i predicts token i + 1.
func responseRows(offset: Int, promptCount: Int, responseCount: Int) -> [Int] {
    (0..<responseCount).map { offset + promptCount - 1 + $0 }
}
