import Foundation

/// One SL-CAI example: the final revision of a (record, sample) with the steps that made it.
public struct RevisionChain: Sendable, Equatable {
    public var record: String
    public var sample: Int
    public var prompt: String
    public var original: String
    /// Final round's principle, critique request, critique, revision request and revision.
    public var principle: String?
    public var critiqueRequest: String
    public var critique: String
    public var revisionRequest: String
    public var revision: String
    public var rounds: Int
    public var flags: [String]

    /// Chains of a revise or critique_revise stage, in record order.
    public static func load(stage: String, store: RunStore, constitution: Constitution?) throws -> [RevisionChain] {
        let records = try store.records()
        let rows = try store.outputs(stage: stage)
        var final: [String: OutputRow] = [:]
        var roundsSeen: [String: Int] = [:]
        for row in rows {
            let id = "\(row.record)\u{1F}\(row.sample)"
            roundsSeen[id, default: 0] += 1
            if (final[id]?.round ?? -1) < row.round { final[id] = row }
        }
        let position = Dictionary(uniqueKeysWithValues: records.map { ($0.id, ($0.position, $0.prompt)) })
        return final.values.compactMap { row -> RevisionChain? in
            guard let (_, prompt) = position[row.record] else { return nil }
            let principle = row.principle.flatMap { constitution?.principle(id: $0) }
            return RevisionChain(
                record: row.record, sample: row.sample, prompt: prompt,
                original: row.chainOriginal ?? "",
                principle: row.principle,
                critiqueRequest: principle?.critique ?? "", critique: row.chainCritique ?? "",
                revisionRequest: principle?.revision ?? "", revision: row.output,
                rounds: roundsSeen["\(row.record)\u{1F}\(row.sample)"] ?? 1, flags: row.flagList)
        }.sorted { (position[$0.record]!.0, $0.sample) < (position[$1.record]!.0, $1.sample) }
    }
}

/// What an export wrote.
public struct ExportSummary: Sendable, Equatable, Codable {
    public var format: String
    public var train: Int
    public var test: Int
    /// Examples left out: empty or truncated outputs, and those the revision gate left out.
    public var skipped: Int
    public var directory: String
    /// Of `skipped`, the revisions the judge did not endorse (`RevisionGate`).
    public var gatedOut: Int = 0

    /// "12 train, 3 test, 2 skipped (1 not endorsed by the judge)".
    public var counts: String {
        "\(train) train, \(test) test, \(skipped) skipped" + (gatedOut > 0 ? " (\(gatedOut) not endorsed by the judge)" : "")
    }
    /// Set when a split file is empty: loaders such as `datasets.load_dataset` reject an empty split.
    public var note: String? {
        let empty = [("train", train), ("test", test)].filter { $0.1 == 0 }.map(\.0)
        guard !empty.isEmpty else { return nil }
        return "\(empty.map { "\($0).jsonl" }.joined(separator: " and ")) \(empty.count == 1 ? "is" : "are") empty: "
            + "datasets.load_dataset(\"json\", data_files=…) rejects an empty split (a test split needs test_fraction > 0 and two or more records)"
    }
}

/// Which records are held out, by record id and seed: an export's test split and a training
/// stage's held-out examples follow the same rule, so every pair of a record lands on one side.
enum RecordSplit {
    /// Deterministic by record: a record's samples stay together.
    static func isHeldOut(record: String, seed: UInt64, fraction: Double) -> Bool {
        guard fraction > 0 else { return false }
        return draw(record: record, seed: seed) < fraction
    }

    static func draw(record: String, seed: UInt64) -> Double {
        Double(SHA256.uint64(fields: ["split", "\(seed)", record]) >> 11) / Double(1 << 53)
    }

    /// The held-out (test) records of an export: those whose draw is below `fraction`, but with a
    /// positive fraction and two or more records never none and never all (the lowest draw
    /// goes to test, or the one with the highest stays in train), so small runs still give
    /// `datasets` two loadable splits. Deterministic by record.
    static func heldOutRecords(_ records: [String], seed: UInt64, fraction: Double) -> Set<String> {
        let unique = Array(Set(records))
        guard fraction > 0 else { return [] }
        let draws = unique.map { ($0, draw(record: $0, seed: seed)) }.sorted { $0.1 < $1.1 }
        var test = Set(draws.filter { $0.1 < fraction }.map(\.0))
        if unique.count >= 2 {
            if test.isEmpty { test.insert(draws[0].0) }
            if test.count == unique.count { test.remove(draws[draws.count - 1].0) }
        }
        return test
    }
}

/// Writes datasets Hugging Face `datasets` loads as they are: `train.jsonl`, `test.jsonl`,
/// `provenance.json`. SFT rows carry the columns of the public CAI datasets (made by the
/// Hugging Face CAI recipe) so recipes written for those consume ours unchanged.
public enum Exporter {
    public static func exportSFT(chains: [RevisionChain], seed: UInt64, testFraction: Double, to directory: URL,
                                 provenance: [String: Any], gatedOut: Int = 0) throws -> ExportSummary {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var train: [[String: Any]] = [], test: [[String: Any]] = []
        var skipped = 0
        let kept = chains.filter { !($0.flags.contains("empty") || $0.flags.contains("truncated") || $0.revision.isEmpty) }
        let testSet = RecordSplit.heldOutRecords(kept.map(\.record), seed: seed, fraction: testFraction)
        for chain in chains {
            if chain.flags.contains("empty") || chain.flags.contains("truncated") || chain.revision.isEmpty {
                skipped += 1
                continue
            }
            let row: [String: Any] = [
                "prompt": chain.prompt,
                "messages": [["role": "user", "content": chain.prompt], ["role": "assistant", "content": chain.revision]],
                "init_prompt": chain.prompt,
                "init_response": chain.original,
                "critic_prompt": chain.critiqueRequest,
                "critic_response": chain.critique,
                "revision_prompt": chain.revisionRequest,
                "revision_response": chain.revision,
                "principle": chain.principle ?? "",
                "rounds": chain.rounds,
                "record_id": chain.record,
                "sample": chain.sample,
            ]
            if testSet.contains(chain.record) { test.append(row) } else { train.append(row) }
        }
        let summary = ExportSummary(format: "sft", train: train.count, test: test.count, skipped: skipped + gatedOut, directory: directory.path,
                                    gatedOut: gatedOut)
        try write(train: train, test: test, summary: summary, provenance: provenance, to: directory)
        return summary
    }

    static func write(train: [[String: Any]], test: [[String: Any]], summary: ExportSummary, provenance: [String: Any],
                      to directory: URL) throws {
        func jsonl(_ rows: [[String: Any]]) throws -> Data {
            var data = Data()
            for row in rows {
                data.append(try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys, .withoutEscapingSlashes]))
                data.append(0x0A)
            }
            return data
        }
        try jsonl(train).write(to: directory.appendingPathComponent("train.jsonl"), options: .atomic)
        try jsonl(test).write(to: directory.appendingPathComponent("test.jsonl"), options: .atomic)
        var p = provenance
        p["format"] = summary.format
        p["counts"] = ["train": summary.train, "test": summary.test, "skipped": summary.skipped, "gated_out": summary.gatedOut]
        if let note = summary.note { p["note"] = note }
        try JSONSerialization.data(withJSONObject: p, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
            .write(to: directory.appendingPathComponent("provenance.json"), options: .atomic)
    }

    /// Preference pairs from judge labels: the judge's preferred response is `chosen`, with
    /// `judge_probability` its probability of being better. TRL rows are conversational
    /// (`prompt` as the user turn, `chosen`/`rejected` as assistant turns) plus the CAI dataset
    /// columns; OpenRLHF rows hold whole conversations under `chosen` and `rejected`. The pairs are
    /// chosen as for training (`PreferencePair.select`, identical sides kept); the rest are counted
    /// as skipped.
    public static func exportPreferences(format: ExportFormat, labels: [(row: OutputRow, label: PairLabel)],
                                         chains: [RevisionChain], prompts: [String: String], seed: UInt64,
                                         testFraction: Double, gate: Bool = false, to directory: URL, provenance: [String: Any]) throws -> ExportSummary {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let chainByKey = Dictionary(chains.map { ("\($0.record)\u{1F}\($0.sample)", $0) }, uniquingKeysWith: { a, _ in a })
        var train: [[String: Any]] = [], test: [[String: Any]] = []
        let (pairs, skipped) = PreferencePair.select(labels, prompts: prompts, gate: gate, forTraining: false)
        let testSet = RecordSplit.heldOutRecords(pairs.map(\.row.record), seed: seed, fraction: testFraction)
        for pair in pairs {
            let (row, label, prompt, chosen, rejected) = (pair.row, pair.label, pair.prompt, pair.chosen, pair.rejected)
            let user: [String: String] = ["role": "user", "content": prompt]
            var out: [String: Any]
            switch format {
            case .openrlhf:
                out = ["prompt": prompt,
                       "chosen": [user, ["role": "assistant", "content": chosen]],
                       "rejected": [user, ["role": "assistant", "content": rejected]]]
            default:
                out = ["prompt": [user],
                       "chosen": [["role": "assistant", "content": chosen]],
                       "rejected": [["role": "assistant", "content": rejected]],
                       "messages": [user, ["role": "assistant", "content": chosen]]]
                if let chain = chainByKey["\(row.record)\u{1F}\(row.sample)"], row.candidateName(0) == "revision" {
                    out["init_prompt"] = chain.prompt
                    out["init_response"] = chain.original
                    out["critic_prompt"] = chain.critiqueRequest
                    out["critic_response"] = chain.critique
                    out["revision_prompt"] = chain.revisionRequest
                    out["revision_response"] = chain.revision
                    out["rounds"] = chain.rounds
                }
            }
            out["judge_probability"] = pair.probability
            out["principle"] = label.principles.joined(separator: ",")
            out["chosen_is"] = row.candidateName(pair.chosenIndex) ?? "candidate \(pair.chosenIndex)"
            out["record_id"] = row.record
            out["pair"] = row.sample
            if testSet.contains(row.record) { test.append(out) } else { train.append(out) }
        }
        // Left out by the gate alone: pairs that pass every other check.
        let gatedOut = gate ? labels.filter { !$0.label.belowConfidence && !RevisionGate.endorses($0.label) }.count : 0
        let summary = ExportSummary(format: format.rawValue, train: train.count, test: test.count, skipped: skipped, directory: directory.path,
                                    gatedOut: gatedOut)
        try write(train: train, test: test, summary: summary, provenance: provenance, to: directory)
        return summary
    }
}
