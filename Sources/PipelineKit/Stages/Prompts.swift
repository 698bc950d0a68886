import Foundation
import ModelKit

/// Renders the prompts of the SL-CAI stages. A base model gets a plain few-shot transcript
/// (DESIGN.md § Prompting a base model: under a chat template it rambles; as a transcript it
/// stays on task); an instruction-tuned model gets the same turns as a chat conversation.
public enum CAIPrompts {
    /// Stop sequences for a transcript: a turn ends at a blank line (examples are separated by
    /// one) or where the model starts writing the next turn itself.
    static let turnLabels = ["\nHuman:", "\nAssistant:", "\nCritique request:", "\nCritique:", "\nRevision request:", "\nRevision:"]
    public static let responseStops = ["\n\n"] + turnLabels
    public static let critiqueStops = ["\n\n"] + turnLabels
    /// A revision by a base model ends at a blank line like every transcript turn. A chat model's
    /// revision ends with its turn: its answers use blank lines between paragraphs and list items,
    /// and stopping there cut revisions at "…try the following steps:" (docs/training.md).
    public static func revisionStops(_ style: PromptStyle) -> [String] {
        style == .chat ? turnLabels : ["\n\n"] + turnLabels
    }

    /// The initial response prompt.
    public static func response(prompt: String, system: String?, style: PromptStyle) -> PromptInput {
        switch style {
        case .completion:
            // A bare transcript turn: an example exchange before it pulled the base model's answers
            // toward the example's topic (seen on gemma-3-270m).
            return .text((system.map { "\($0)\n\n" } ?? "") + "Human: \(prompt)\nAssistant:")
        case .chat:
            var messages: [ChatMessage] = []
            if let system { messages.append(.system(system)) }
            messages.append(.user(prompt))
            return .chat(messages)
        }
    }

    /// A critique, or with `critique` given a revision, of `response` under `principle`;
    /// `withCritique: false` renders a revision that skips the critique step.
    public static func critiqueOrRevision(
        prompt: String, response: String, principle: Principle, critique: String?, withCritique: Bool,
        examples: [FewShotExample], constitution: Constitution, style: PromptStyle
    ) -> PromptInput {
        typealias Turn = (role: ChatMessage.Role, label: String, text: String)
        let wantsRevision = critique != nil || !withCritique
        var blocks: [[Turn]] = []
        for example in examples {
            guard let p = constitution.principle(id: example.principle) else { continue }
            var block: [Turn] = [(.user, "Human", example.prompt), (.assistant, "Assistant", example.response)]
            if withCritique {
                block += [(.user, "Critique request", p.critique), (.assistant, "Critique", example.critique)]
            }
            block += [(.user, "Revision request", p.revision), (.assistant, "Revision", example.revision)]
            blocks.append(block)
        }
        var task: [Turn] = [(.user, "Human", prompt), (.assistant, "Assistant", response)]
        if withCritique {
            task.append((.user, "Critique request", principle.critique))
            if let critique { task.append((.assistant, "Critique", critique)) }
        }
        if wantsRevision { task.append((.user, "Revision request", principle.revision)) }
        blocks.append(task)

        switch style {
        case .completion:
            // "Label: text" per line, a blank line between examples, ending with the open label.
            let text = blocks.map { $0.map { "\($0.label): \($0.text)\n" }.joined() }.joined(separator: "\n")
            return .text(text + (wantsRevision ? "Revision:" : "Critique:"))
        case .chat:
            return .chat(blocks.joined().map { ChatMessage(role: $0.role, content: $0.text) })
        }
    }

    /// The model's text as a stage keeps it: leading and trailing whitespace removed.
    public static func clean(_ raw: String) -> String {
        raw.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Picks principles reproducibly: a draw seeded by (pipeline seed, record, stage, sample,
/// round), weighted by each principle's `weight`, among those carrying one of `tags`.
public struct PrincipleSampler: Sendable {
    public let candidates: [Principle]
    private let cumulative: [Double]

    public init(constitution: Constitution, tags: [String]) {
        let pool = tags.isEmpty ? constitution.principles : constitution.principles.filter { !Set($0.tags).isDisjoint(with: tags) }
        candidates = pool.isEmpty ? constitution.principles : pool
        var total = 0.0
        cumulative = candidates.map { total += $0.weight; return total }
    }

    /// The sampler `principles: match` uses for a record of `category`: the principles carrying one
    /// of the tags the constitution's `categories` maps it to (and one of `tags`, when given); all
    /// principles (or those of `tags`), weighted, when the category is absent or unmapped.
    public init(constitution: Constitution, tags: [String], category: String?) {
        guard let category, let mapped = constitution.categories[category] else {
            self.init(constitution: constitution, tags: tags)
            return
        }
        let wanted = tags.isEmpty ? mapped : mapped.filter(tags.contains)
        self.init(constitution: constitution, tags: wanted.isEmpty ? tags : wanted)
    }

    public func pick(seed: UInt64, record: String, stage: String, sample: Int, round: Int) -> Principle {
        let draw = SHA256.uint64(fields: ["principle", "\(seed)", record, stage, "\(sample)", "\(round)"])
        let u = Double(draw >> 11) / Double(1 << 53) * (cumulative.last ?? 1)
        let index = cumulative.firstIndex { u < $0 } ?? candidates.count - 1
        return candidates[index]
    }
}

/// The sampling seed of one call, derived so reruns repeat it and calls differ from each other.
public func derivedSeed(_ pipelineSeed: UInt64, record: String, stage: String, sample: Int, round: Int) -> UInt64 {
    SHA256.uint64(fields: ["seed", "\(pipelineSeed)", record, stage, "\(sample)", "\(round)"])
}
