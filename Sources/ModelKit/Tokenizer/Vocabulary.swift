import Foundation

/// Token types as GGUF stores them in `tokenizer.ggml.token_type` (llama.cpp's llama_token_type).
public enum TokenType: Int32, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// The token table of a model, read from GGUF metadata.
public struct Vocabulary: Sendable {
    public let tokens: [String]
    /// Raw bytes of each token's text.
    let tokenBytes: [[UInt8]]
    public let scores: [Float]
    public let types: [TokenType]
    public let bos: Int32?
    public let eos: Int32?
    public let eot: Int32?
    public let unknown: Int32?
    public let padding: Int32?
    public let addBOS: Bool
    public let addSpacePrefix: Bool
    /// Token id by exact byte text.
    let index: [[UInt8]: Int32]

    public var count: Int { tokens.count }

    public init(tokens: [String], scores: [Float]? = nil, types: [TokenType]? = nil, bos: Int32? = nil,
                eos: Int32? = nil, eot: Int32? = nil, unknown: Int32? = nil, padding: Int32? = nil,
                addBOS: Bool = false, addSpacePrefix: Bool = false) {
        self.tokens = tokens
        self.tokenBytes = tokens.map { Array($0.utf8) }
        self.scores = scores ?? [Float](repeating: 0, count: tokens.count)
        self.types = types ?? [TokenType](repeating: .normal, count: tokens.count)
        self.bos = bos
        self.eos = eos
        self.eot = eot
        self.unknown = unknown
        self.padding = padding
        self.addBOS = addBOS
        self.addSpacePrefix = addSpacePrefix
        var index: [[UInt8]: Int32] = [:]
        index.reserveCapacity(tokens.count)
        // The first id wins for duplicate texts, as in llama.cpp's token_to_id map.
        for (i, bytes) in tokenBytes.enumerated() where index[bytes] == nil { index[bytes] = Int32(i) }
        self.index = index
    }

    public func id(of text: String) -> Int32? { index[Array(text.utf8)] }
    func id(of bytes: [UInt8]) -> Int32? { index[bytes] }

    /// Tokens that end a turn or the text (EOS and, where the model has one, end-of-turn).
    public var stopTokens: Set<Int32> { Set([eos, eot].compactMap { $0 }) }

    /// Reads `tokenizer.ggml.*` from a GGUF file.
    public static func load(from file: GGUFFile) throws -> Vocabulary {
        guard let tokenValues = file.metadata["tokenizer.ggml.tokens"]?.arrayValue else {
            throw GGUFError.missingKey(path: file.path, key: "tokenizer.ggml.tokens")
        }
        let tokens = tokenValues.map { $0.stringValue ?? "" }
        let scores = file.metadata["tokenizer.ggml.scores"]?.arrayValue?.map { Float($0.doubleValue ?? 0) }
        let types = file.metadata["tokenizer.ggml.token_type"]?.arrayValue?.map {
            TokenType(rawValue: Int32($0.intValue ?? 1)) ?? .normal
        }
        if let scores, scores.count != tokens.count {
            throw GGUFError.wrongKeyType(path: file.path, key: "tokenizer.ggml.scores", expected: "one score per token")
        }
        if let types, types.count != tokens.count {
            throw GGUFError.wrongKeyType(path: file.path, key: "tokenizer.ggml.token_type", expected: "one type per token")
        }
        func special(_ key: String) -> Int32? {
            guard let id = file.metadata["tokenizer.ggml.\(key)_token_id"]?.intValue, id >= 0, id < tokens.count else { return nil }
            return Int32(id)
        }
        let model = (try? file.string("tokenizer.ggml.model")) ?? "llama"
        // End of turn: explicit key, else the family's conventional token when present.
        let eot = special("eot") ?? ["<end_of_turn>", "<|im_end|>", "<|eot_id|>"].lazy
            .compactMap { name in tokens.firstIndex(of: name).map { Int32($0) } }.first
        return Vocabulary(
            tokens: tokens, scores: scores, types: types,
            bos: special("bos"), eos: special("eos"), eot: eot, unknown: special("unknown"), padding: special("padding"),
            addBOS: file.optionalBool("tokenizer.ggml.add_bos_token") ?? (model == "llama"),
            addSpacePrefix: file.optionalBool("tokenizer.ggml.add_space_prefix") ?? (model == "llama"))
    }
}
