import Foundation
import TrainKit

/// Sampling settings shared by every stage that generates text.
public struct SamplingSpec: Sendable, Equatable, Codable {
    public var temperature: Double
    public var topP: Double
    public var topK: Int
    public var maxTokens: Int
    public var stop: [String]

    static let keys = ["temperature", "top_p", "top_k", "max_tokens", "stop"]

    public init(temperature: Double, topP: Double = 1, topK: Int = 0, maxTokens: Int, stop: [String] = []) {
        self.temperature = temperature
        self.topP = topP
        self.topK = topK
        self.maxTokens = maxTokens
        self.stop = stop
    }

    static func decode(_ m: MappingReader, defaultTemperature: Double, defaultMaxTokens: Int) throws -> SamplingSpec {
        SamplingSpec(
            temperature: try m["temperature"]?.double(in: 0...5) ?? defaultTemperature,
            topP: try m["top_p"]?.double(in: 0.0001...1) ?? 1.0,
            topK: try m["top_k"]?.int(in: 0...1_000_000) ?? 0,
            maxTokens: try m["max_tokens"]?.int(in: 1...32_768) ?? defaultMaxTokens,
            stop: try m["stop"]?.stringList() ?? [])
    }
}

/// How a critique stage picks principles, one per record and round (seeded, weighted): `sample`
/// draws among all principles (or those of `tags`); `match` draws among the principles whose tags
/// the constitution's `categories` maps the record's `category` to, falling back to `sample`.
public enum PrincipleSelection: String, Sendable, Codable, CaseIterable { case sample, match }
/// Which worked examples a contrast judge reads for a pair (`examples:` on a judge stage).
public enum ExampleSelection: String, Sendable, Codable, CaseIterable { case all, match }
public enum PairMode: String, Sendable, Codable, CaseIterable { case originalVsRevision = "original_vs_revision", sampled }
public enum JudgeOrders: String, Sendable, Codable, CaseIterable { case both, single }
/// How a judge prompt lays out the pair: `dialogue` ("Assistant (A): …", the question after both
/// responses; the default, measured better for the 0.5B default judge) or `options` (the CAI
/// paper's "… question Options: (A) … (B) …"). docs/judge.md has the measurements.
public enum JudgeLayout: String, Sendable, Codable, CaseIterable { case dialogue, options }
public enum LabelKind: String, Sendable, Codable, CaseIterable { case soft, hard }
public enum ExportFormat: String, Sendable, Codable, CaseIterable { case sft, trl, openrlhf }

/// Critique/revise settings (SL-CAI): generate → critique → revise.
public struct CritiqueSpec: Sendable, Equatable {
    public var model: String
    public var input: String
    public var principles: PrincipleSelection
    /// Restrict sampling to principles carrying one of these tags (empty: all).
    public var tags: [String]
    /// Number of few-shot examples rendered before the task.
    public var fewShot: Int
    /// Critique/revision rounds (CAI paper: up to 4).
    public var rounds: Int
    /// Whether a critique precedes each revision (`critique: false` revises directly).
    public var critique: Bool
    public var sampling: SamplingSpec
}

public struct GenerateSpec: Sendable, Equatable {
    public var model: String
    public var samples: Int
    public var system: String?
    public var sampling: SamplingSpec
}

/// How a judge turns a pair into a probability (docs/judge.md has each one's measurements).
public enum JudgeMethod: String, Sendable, Codable, CaseIterable {
    /// Both responses in one prompt; P(A) from the option tokens "A"/"B" (CAI paper §4.1).
    case pairwise
    /// Each response alone; s = log p(" Yes") − log p(" No") to the principle's question, and
    /// P(a better) = σ((s_a − s_b) / T): no position to be biased by.
    case pointwise
    /// Each response alone; s = the expected value of a 1–5 score token (G-Eval), P = σ((s_a − s_b) / T).
    case rating
    /// Each response's log-likelihood after the constitution's worked examples answered well,
    /// minus after the same examples answered badly: s = log p(r | good) − log p(r | flawed),
    /// P = σ((s_a − s_b) / T). The judge is never asked a question.
    case contrast
}

/// Dividing out a pairwise judge's prior for each option.
public enum PositionCalibration: String, Sendable, Codable, CaseIterable {
    case none
    /// The prior is P(A) with "N/A" as both responses ("Calibrate Before Use", Zhao et al. 2021):
    /// logit p ← logit p − logit p(A | N/A, N/A), per model and principle.
    case contentFree = "content_free"
}

/// The parameters fitted on a labelled file: P = σ(a · z + b) on the label's log-odds z.
public enum CalibrationFit: String, Sendable, Codable, CaseIterable {
    /// b = 0: keeps a swapped pair's label at exactly 1 − p (the judge's symmetry). The default.
    case temperature
    /// Platt scaling, a and b.
    case platt
}

public struct JudgeSpec: Sendable, Equatable {
    /// The first (or only) judge model.
    public var model: String
    /// The panel: every judge model, averaged in log-odds (`model: [a, b]`).
    public var models: [String]
    public var method: JudgeMethod
    /// `pointwise`/`rating`: the temperature T of σ((s_a − s_b) / T).
    public var temperature: Double
    public var positionCalibration: PositionCalibration
    /// A labelled pairs file (`prompt`, `response_a`, `response_b`, `better`) to fit calibration on.
    public var calibration: String?
    public var calibrationFit: CalibrationFit
    /// Constitutions whose principles and worked examples the judge uses instead of the
    /// pipeline's (`constitution: FILE` or a list, merged); empty: the pipeline's.
    public var constitutions: [String]
    public var input: String
    public var pairs: PairMode
    public var orders: JudgeOrders
    /// Preference principles sampled and averaged per pair.
    public var principles: Int
    public var fewShot: Int
    public var layout: JudgeLayout
    public var cot: Bool
    /// Chain-of-thought probabilities are clamped into this range (RL-CAI: [0.4, 0.6]).
    public var cotClamp: ClosedRange<Double>
    /// Labels with |p − 0.5| below this are kept in the store but not exported.
    public var minConfidence: Double
    public var sampling: SamplingSpec
    /// `original_vs_revision` only: pairs whose revision the judge does not endorse by
    /// `min_confidence` are left out of DPO, reward-model and preference-export data (`RevisionGate`).
    public var gate: Bool = false
    /// `contrast` only: `all` worked examples in every context, or `match`: those fitting the
    /// prompt's category (`Constitution.examples(forCategory:)`), and the preference principle drawn
    /// among the category's principles.
    public var examples: ExampleSelection = .all
    /// `original_vs_revision` only: a yes/no harm question asked of each endorsed revision; a
    /// flagged revision is not endorsed.
    public var harmCheck: HarmCheckSpec? = nil

    /// Model calls one pair costs per judge model (scoring calls; `cot` adds as many generations).
    public var callsPerPair: Int {
        switch method {
        case .pairwise: return (orders == .both ? 2 : 1) * principles
        case .pointwise, .rating: return 2 * principles
        case .contrast: return 4 * principles
        }
    }
}

/// Settings every trainer shares (TRL's TrainingArguments, trimmed).
public struct TrainingSpec: Sendable, Equatable {
    public var base: String
    public var input: String
    public var lora: LoRAConfig
    public var epochs: Int
    public var learningRate: Double
    public var batchSize: Int
    public var gradientAccumulation: Int
    public var maxLength: Int
    public var evalFraction: Double
    public var schedule: LearningRateSchedule
    public var warmupRatio: Double
    public var weightDecay: Double
    public var maxGradNorm: Double
    public var maxSteps: Int?
    public var checkpointEvery: Int
    public var microBatchTokens: Int
    /// Precision of the merged GGUF (`f16`, `q8_0`, `f32`), or nil (`none`) to skip writing it.
    public var merge: MergedModel.Precision?
    /// `sft` only: the judge stage whose endorsement a revision needs (`RevisionGate`).
    public var gate: String? = nil
}

public struct RewardModelSpec: Sendable, Equatable {
    public var training: TrainingSpec
    public var labels: LabelKind
    public var margin: Double
    public var centerRewards: Double
}

public struct DPOSpec: Sendable, Equatable {
    public var training: TrainingSpec
    public var beta: Double
    public var loss: DPOLossKind
    public var labelSmoothing: Double
    /// Weight of the chosen responses' mean token NLL added to the DPO loss (TRL's `rpo_alpha`,
    /// Pang et al. 2024); 0 is plain DPO.
    public var rpoAlpha: Double = 0
    /// Weight of the longer response's tokens past the shorter one's length (TRL's `ld_alpha`,
    /// LD-DPO); 1 is plain DPO.
    public var ldAlpha: Double = 1
}

public struct PPOSpec: Sendable, Equatable {
    public var policy: String
    public var rewardModel: String
    public var algorithm: RLAlgorithm
    public var lora: LoRAConfig
    public var steps: Int
    public var batchSize: Int
    public var ppoEpochs: Int
    public var learningRate: Double
    public var klCoef: Double
    public var adaptiveKL: Bool
    public var targetKL: Double
    public var gamma: Double
    public var lambda: Double
    public var clipRange: Double
    public var clipRangeValue: Double
    /// Samples per prompt for RLOO's leave-one-out baseline.
    public var rlooK: Int
    public var valueCoef: Double
    public var klEstimator: KLEstimator
    public var checkpointEvery: Int
    /// Precision of the merged GGUF (`f16`, `q8_0`, `f32`) or nil (`none`).
    public var merge: MergedModel.Precision?
    public var monitors: MonitorConfig
    public var sampling: SamplingSpec
    /// Subtracted from the reward of a response cut at `max_tokens` (TRL's `missing_eos_penalty`).
    public var missingEOSPenalty: Double? = nil
}

public struct EvaluateSpec: Sendable, Equatable {
    /// A training stage id or a model name.
    public var policy: String
    public var baseline: String
    /// The evaluation judge (the first of `judges`); it answers the refusal and sycophancy questions.
    public var judge: String
    /// Every evaluation judge model (`judge: [a, b]`, a panel for `judge_method: contrast`).
    public var judges: [String]
    /// How the win rate is judged: `contrast` (default; docs/judge.md measured it well above the
    /// pairwise questions on the gold set) or `pairwise`.
    public var judgeMethod: JudgeMethod
    /// Contrast only: the worked examples the win-rate judge reads (`all`, or `match`: those of the
    /// held-out prompt's category, as `examples:` on a judge stage).
    public var judgeExamples: ExampleSelection = .all
    public var rewardModel: String?
    public var prompts: String
    public var benignPrompts: String?
    public var sycophancyPrompts: String?
    public var limit: Int?
    /// The win-rate judge's question layout (the judge stage's `layout`; `options` suits the 1.5B judge).
    public var judgeLayout: JudgeLayout
    public var sampling: SamplingSpec
}

public struct ExportSpec: Sendable, Equatable {
    public var input: String
    public var format: ExportFormat
    public var testFraction: Double
    /// `format: sft` only: the judge stage whose endorsement a revision needs (`RevisionGate`).
    public var gate: String? = nil
}

/// One stage of a pipeline and its typed parameters.
public enum StageKind: Sendable, Equatable {
    case generate(GenerateSpec)
    case critique(CritiqueSpec)
    case revise(CritiqueSpec)
    case critiqueRevise(CritiqueSpec)
    case judge(JudgeSpec)
    case rewardModel(RewardModelSpec)
    case sft(TrainingSpec)
    case dpo(DPOSpec)
    case ppo(PPOSpec)
    case evaluate(EvaluateSpec)
    case export(ExportSpec)

    /// The YAML key naming the stage type.
    public var keyword: String {
        switch self {
        case .generate: "generate"
        case .critique: "critique"
        case .revise: "revise"
        case .critiqueRevise: "critique_revise"
        case .judge: "judge"
        case .rewardModel: "reward_model"
        case .sft: "sft"
        case .dpo: "dpo"
        case .ppo: "ppo"
        case .evaluate: "evaluate"
        case .export: "export"
        }
    }

    static let keywords = ["generate", "critique", "revise", "critique_revise", "judge", "reward_model",
                           "sft", "dpo", "ppo", "evaluate", "export"]
}

/// `- { id: responses, generate: { … } }`
public struct Stage: Sendable, Equatable {
    public var id: String
    public var kind: StageKind
    public var location: SourceLocation

    static func decode(_ reader: NodeReader, resolve: (NodeReader) throws -> String) throws -> Stage {
        let m = try reader.mapping(allowed: ["id"] + StageKind.keywords)
        let idReader = try m.require("id")
        let id = try idReader.text()
        guard id.range(of: #"^[A-Za-z0-9][A-Za-z0-9_-]*$"#, options: .regularExpression) != nil else {
            throw idReader.invalid("stage ids use letters, digits, '-' and '_' (found `\(id)`)")
        }
        let kinds = m.keys.filter { $0 != "id" }
        guard kinds.count == 1, let keyword = kinds.first else {
            let message = kinds.isEmpty
                ? "a stage needs one type key: \(StageKind.keywords.joined(separator: ", "))"
                : "a stage has exactly one type key, found \(kinds.joined(separator: " and "))"
            throw reader.invalid(message)
        }
        let body = try m.require(keyword)
        return Stage(id: id, kind: try decodeKind(keyword, body, resolve: resolve), location: reader.location)
    }

    private static func decodeKind(_ keyword: String, _ r: NodeReader,
                                   resolve: (NodeReader) throws -> String) throws -> StageKind {
        let critiqueKeys = ["model", "input", "principles", "tags", "few_shot", "rounds", "critique"] + SamplingSpec.keys
        switch keyword {
        case "generate":
            let m = try r.mapping(allowed: ["model", "samples", "system"] + SamplingSpec.keys)
            return .generate(GenerateSpec(
                model: try m.require("model").text(),
                samples: try m["samples"]?.int(in: 1...64) ?? 1,
                system: try m["system"]?.string(),
                sampling: try .decode(m, defaultTemperature: 0.8, defaultMaxTokens: 192)))
        case "critique", "revise", "critique_revise":
            let m = try r.mapping(allowed: critiqueKeys)
            let spec = CritiqueSpec(
                model: try m.require("model").text(),
                input: try m.require("input").text(),
                principles: try m["principles"]?.oneOf(PrincipleSelection.self) ?? .sample,
                tags: try m["tags"]?.stringList() ?? [],
                fewShot: try m["few_shot"]?.int(in: 0...16) ?? 2,
                rounds: try m["rounds"]?.int(in: 1...4) ?? 1,
                critique: try m["critique"]?.bool() ?? true,
                sampling: try .decode(m, defaultTemperature: 0.7, defaultMaxTokens: 160))
            if keyword == "critique" {
                for key in ["rounds", "critique"] where m.has(key) {
                    throw m.invalid(key, "`\(key)` belongs on a revise or critique_revise stage")
                }
                return .critique(spec)
            }
            return keyword == "revise" ? .revise(spec) : .critiqueRevise(spec)
        case "judge":
            let m = try r.mapping(allowed: ["model", "input", "pairs", "orders", "principles", "few_shot", "layout",
                                            "cot", "cot_clamp", "min_confidence", "method", "temperature",
                                            "position_calibration", "calibration", "calibration_fit", "constitution", "gate", "examples", "harm_check"] + SamplingSpec.keys)
            let models = try m.require("model").oneOrList(empty: "expected at least one model").map { try $0.text() }
            let method = try m["method"]?.oneOf(JudgeMethod.self) ?? .pairwise
            if method != .pairwise {
                for key in ["cot", "position_calibration", "layout", "orders"] where m.has(key) {
                    throw m.invalid(key, "`\(key)` applies to `method: pairwise` only (this stage has `method: \(method.rawValue)`)")
                }
            }
            let calibration = try m["calibration"].map(resolve)
            let constitutions = try m["constitution"]?.oneOrList(empty: "expected a constitution file or a list of them").map(resolve) ?? []
            let pairs = try m["pairs"]?.oneOf(PairMode.self) ?? .originalVsRevision
            let gate = try m["gate"]?.bool() ?? false
            if gate && pairs != .originalVsRevision {
                throw m.invalid("gate", "`gate` keeps revisions the judge endorses; it needs `pairs: original_vs_revision`")
            }
            let harmCheck = try m["harm_check"].map(HarmCheckSpec.decode)
            if harmCheck != nil && pairs != .originalVsRevision {
                throw m.invalid("harm_check", "`harm_check` asks about revisions; it needs `pairs: original_vs_revision`")
            }
            let examples = try m["examples"]?.oneOf(ExampleSelection.self) ?? .all
            if examples == .match && method != .contrast {
                throw m.invalid("examples", "`examples: match` applies to `method: contrast`")
            }
            var clamp = 0.4...0.6
            if let c = m["cot_clamp"] {
                let bounds = try c.list().map { try $0.double(in: 0...1) }
                guard bounds.count == 2, bounds[0] < bounds[1] else { throw c.invalid("expected [low, high] with low < high") }
                clamp = bounds[0]...bounds[1]
            }
            return .judge(JudgeSpec(
                model: models[0],
                models: models,
                method: method,
                temperature: try m["temperature"]?.double(in: 0.001...1000) ?? 1,
                positionCalibration: try m["position_calibration"]?.oneOf(PositionCalibration.self) ?? .none,
                calibration: calibration,
                calibrationFit: try m["calibration_fit"]?.oneOf(CalibrationFit.self) ?? .temperature,
                constitutions: constitutions,
                input: try m.require("input").text(),
                pairs: pairs,
                orders: try m["orders"]?.oneOf(JudgeOrders.self) ?? .both,
                // `contrast` reads every worked example and one principle by default (docs/judge.md).
                principles: try m["principles"]?.int(in: 1...32) ?? (method == .contrast ? 1 : JudgePrompts.defaultPrinciples),
                fewShot: try m["few_shot"]?.int(in: 0...16) ?? (method == .contrast ? 16 : JudgePrompts.defaultFewShot),
                layout: try m["layout"]?.oneOf(JudgeLayout.self) ?? JudgePrompts.defaultLayout,
                cot: try m["cot"]?.bool() ?? false,
                cotClamp: clamp,
                minConfidence: try m["min_confidence"]?.double(in: 0...0.5) ?? 0,
                sampling: try .decode(m, defaultTemperature: 0, defaultMaxTokens: 128),
                gate: gate,
                examples: examples,
                harmCheck: harmCheck))
        case "reward_model", "sft", "dpo", "ppo":
            let kind: TrainerKind = ["reward_model": .rm, "sft": .sft, "dpo": .dpo][keyword] ?? .ppo
            switch try TrainingMethod.decode(kind, r.mapping(allowed: TrainingMethod.keys(kind, file: false))) {
            case .sft(let spec): return .sft(spec)
            case .rewardModel(let spec): return .rewardModel(spec)
            case .dpo(let spec): return .dpo(spec)
            case .ppo(let spec): return .ppo(spec)
            }
        case "evaluate":
            let m = try r.mapping(allowed: ["policy", "baseline", "judge", "reward_model", "prompts", "benign_prompts",
                                            "sycophancy_prompts", "limit", "judge_layout", "judge_method", "judge_examples"] + SamplingSpec.keys)
            let judgeReader = try m.require("judge")
            let judges = try judgeReader.oneOrList(empty: "expected at least one model").map { try $0.text() }
            let judgeLayout = try m["judge_layout"]?.oneOf(JudgeLayout.self) ?? JudgePrompts.defaultLayout
            // A stage that names a `judge_layout` (a pairwise setting) keeps the pairwise judge it had.
            let judgeMethod = try m["judge_method"]?.oneOf(JudgeMethod.self) ?? (m.has("judge_layout") ? .pairwise : .contrast)
            guard judgeMethod == .contrast || judgeMethod == .pairwise else {
                throw m["judge_method"]!.invalid("evaluation judges with `contrast` or `pairwise`")
            }
            if judgeMethod == .pairwise, judges.count > 1 { throw judgeReader.invalid("a judge panel needs `judge_method: contrast`") }
            let judgeExamples = try m["judge_examples"]?.oneOf(ExampleSelection.self) ?? .all
            if judgeMethod == .pairwise, m.has("judge_examples") {
                throw m.invalid("judge_examples", "`judge_examples` applies to `judge_method: contrast`")
            }
            if judgeMethod != .pairwise, m.has("judge_layout") {
                throw m.invalid("judge_layout", "`judge_layout` applies to `judge_method: pairwise` only")
            }
            return .evaluate(EvaluateSpec(
                policy: try m.require("policy").text(),
                baseline: try m.require("baseline").text(),
                judge: judges[0],
                judges: judges,
                judgeMethod: judgeMethod,
                judgeExamples: judgeExamples,
                rewardModel: try m["reward_model"]?.text(),
                prompts: try resolve(try m.require("prompts")),
                benignPrompts: try m["benign_prompts"].map(resolve),
                sycophancyPrompts: try m["sycophancy_prompts"].map(resolve),
                limit: try m["limit"]?.int(in: 1...1_000_000),
                judgeLayout: judgeLayout,
                sampling: try .decode(m, defaultTemperature: 0.7, defaultMaxTokens: 160)))
        default:  // "export": the mapping's allowed keys leave no other keyword
            let m = try r.mapping(allowed: ["input", "format", "test_fraction", "gate"])
            let format = try m["format"]?.oneOf(ExportFormat.self) ?? .trl
            if format != .sft, m.has("gate") {
                throw m.invalid("gate", "`gate` applies to `format: sft`; preference exports follow their judge stage's `gate: true`")
            }
            return .export(ExportSpec(
                input: try m.require("input").text(),
                format: format,
                testFraction: try m["test_fraction"]?.double(in: 0...0.9) ?? 0.1,
                gate: try m["gate"]?.text()))
        }
    }
}
