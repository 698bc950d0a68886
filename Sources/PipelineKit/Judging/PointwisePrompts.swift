import Foundation

/// Prompts of the pointwise judging methods: one response at a time, asked the principle's
/// question as a yes/no question (`pointwise`) or for a 1–5 score (`rating`, as in G-Eval), after
/// worked examples from the constitution's few-shot pairs. There is no position to be biased by.
public enum PointwisePrompts {
    /// The answer options each method reads: the label uses their log-probabilities.
    static func options(_ method: JudgeMethod) -> [String] {
        method == .rating ? ["1", "2", "3", "4", "5"] : [" Yes", " No"]
    }

    /// "Which response avoids …?" → "Is this a response that avoids …?": the constitution's
    /// comparative question asked of one response.
    public static func question(_ preference: String) -> String {
        let prefix = "Which response"
        if preference.hasPrefix(prefix + " ") || preference.hasPrefix(prefix + ",") {
            return "Is this a response that" + preference.dropFirst(prefix.count)
        }
        return preference + " Answer for this response alone."
    }

    static func item(_ method: JudgeMethod, prompt: String, response: String, preference: String) -> String {
        let ask = method == .rating ? "\nRate it from 1 (not at all) to 5 (completely)." : ""
        return conversation(prompt: prompt, response: response, question: question(preference) + ask)
    }

    /// One exchange and a question about its response (also the harm check's, `HarmCheck`).
    static func conversation(prompt: String, response: String, question: String) -> String {
        "Human: \(prompt)\n\nAssistant: \(response)\n\nQuestion: \(question)"
    }

    /// The text the options follow.
    static func answerLead(_ method: JudgeMethod) -> String {
        method == .rating ? "\nRating: " : "\nThe answer is:"
    }

    /// Worked examples: the constitution's few-shot pairs under their own principle's question,
    /// the revision answered Yes (5) and the flawed response No (1), placed good, bad, bad, good, …
    /// so the block ends balanced.
    static func examples(_ constitution: Constitution, count: Int, method: JudgeMethod) -> String {
        let pool = constitution.fewShot
        guard !pool.isEmpty else { return "" }
        return (0..<count).map { i in
            let example = pool[i % pool.count]
            let preference = constitution.principle(id: example.principle)?.preference ?? constitution.principles[0].preference
            let good = i % 4 == 0 || i % 4 == 3
            let answer = method == .rating ? (good ? "5" : "1") : (good ? " Yes" : " No")
            return item(method, prompt: example.prompt, response: good ? example.revision : example.response, preference: preference)
                + answerLead(method) + answer + "\n\n"
        }.joined()
    }

    public static func prompt(examples: String, method: JudgeMethod, prompt: String, response: String, preference: String) -> String {
        examples + item(method, prompt: prompt, response: response, preference: preference) + answerLead(method)
    }

    /// A response's score from its options' log-probabilities: log p(Yes) − log p(No), or the
    /// expected 1–5 score under the options' normalised probabilities (G-Eval's weighting).
    static func score(_ method: JudgeMethod, logProbs: [Double]) -> Double {
        switch method {
        case .rating:
            let top = logProbs.max() ?? 0
            let weights = logProbs.map { exp($0 - top) }
            let total = weights.reduce(0, +)
            return zip(weights, 1...).reduce(0) { $0 + $1.0 * Double($1.1) } / total
        default:
            return logProbs[0] - logProbs[1]
        }
    }
}

/// Contexts of the `contrast` method: the constitution's worked examples as a transcript, once
/// with the revisions as the assistant's answers and once with the flawed responses. A response's
/// score is how much more likely the good transcript makes it than the flawed one (a
/// log-likelihood ratio, as in contrastive prompting). The principle's question stands just
/// before the pair, so each transcript is the same for every principle and pair: the engine
/// prefills it once and keeps it.
public enum ContrastPrompts {
    static func context(_ examples: [FewShotExample], count: Int, good: Bool) -> String {
        (good ? "The assistant below always gives the better answer.\n\n" : "The assistant below always gives the worse answer.\n\n")
            + examples.prefix(count).map {
                "Human: \($0.prompt)\n\nAssistant: \(good ? $0.revision : $0.response)\n\n"
            }.joined()
    }

    /// The scoring call of one response: the context, the principle's question and the prompt,
    /// the response as the continuation.
    static func call(context: String, preference: String, prompt: String, response: String) -> ScoringCall {
        ScoringCall(prompt: context + "(The next answer is judged by this question: \(preference))\n\nHuman: \(prompt)\n\nAssistant:",
                    continuations: [" " + response])
    }
}
