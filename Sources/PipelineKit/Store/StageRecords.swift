import Foundation

/// What the critique, revise and judge stages keep in a row's `extra`: a JSON object of strings,
/// the store's format since its first version, read and written here under names that say what
/// each field holds.
extension OutputRow {
    /// `extra` as keys and values; empty when absent or not an object of strings.
    public var extraFields: [String: String] {
        guard let extra, let object = try? JSONSerialization.jsonObject(with: Data(extra.utf8)) as? [String: String] else { return [:] }
        return object
    }

    /// `extra` for these fields, keys sorted; nil when there are none.
    static func extraText(_ fields: [String: String]) -> String? {
        guard !fields.isEmpty, let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Critique and revision rows: the response the chain started from.
    public var chainOriginal: String? { extraFields["original"] }
    /// Critique and revision rows: the text this round critiqued or revised.
    public var critiquedText: String? { extraFields["response"] }
    /// Revision rows: the critique the revision answers.
    public var chainCritique: String? { extraFields["critique"] }

    /// Judge rows: what candidate `index` is ("revision", "original" or "sample N").
    public func candidateName(_ index: Int) -> String? { extraFields["candidate_\(index)"] }
    /// Judge rows of an original-vs-revision pair: the index of the revision's candidate.
    public var revisionCandidate: Int? {
        let fields = extraFields
        return (0..<2).first { fields["candidate_\($0)"] == "revision" }
    }
    /// Judge rows: the `PairLabel`, as JSON.
    var labelJSON: String? { extraFields["label"] }
}
