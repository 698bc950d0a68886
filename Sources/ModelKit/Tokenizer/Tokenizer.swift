import Foundation

/// Text ↔ token ids for one model.
public protocol Tokenizer: Sendable {
    var vocabulary: Vocabulary { get }
    /// Tokenizes `text`. `addBOS: nil` follows the model's metadata; `parseSpecial` recognises
    /// control-token text such as `<start_of_turn>` (user-defined tokens are always recognised).
    func encode(_ text: String, addBOS: Bool?, parseSpecial: Bool) -> [Int32]
    /// The bytes a token stands for; control tokens give their text unless `skipSpecial`.
    func pieceBytes(_ id: Int32, skipSpecial: Bool) -> [UInt8]
}

extension Tokenizer {
    public func encode(_ text: String) -> [Int32] { encode(text, addBOS: nil, parseSpecial: false) }

    /// Decodes ids to text. With `skipSpecial: false` this is the exact inverse of `encode`.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for (i, id) in ids.enumerated() {
            var piece = pieceBytes(id, skipSpecial: skipSpecial)
            // SentencePiece's space prefix is dropped from the first piece (llama.cpp's detokenize).
            if i == 0, vocabulary.addSpacePrefix, piece.first == 0x20 { piece.removeFirst() }
            bytes += piece
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Decodes a token stream incrementally, holding back bytes of an incomplete UTF-8 character
/// until the token that completes it arrives (a character can span byte-fallback tokens).
public struct StreamingDecoder {
    private let tokenizer: any Tokenizer
    private let skipSpecial: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: any Tokenizer, skipSpecial: Bool = true) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
    }

    /// Text that is complete after `id`; may be empty while a character is still incomplete.
    public mutating func append(_ id: Int32) -> String {
        pending += tokenizer.pieceBytes(id, skipSpecial: skipSpecial)
        let complete = completePrefixLength(pending)
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is left (an incomplete character decodes with replacement characters).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    private func completePrefixLength(_ bytes: [UInt8]) -> Int {
        // Walk back over at most 3 continuation bytes to the last lead byte.
        var i = bytes.count - 1
        var back = 0
        while i >= 0 && back < 4 && bytes[i] & 0xC0 == 0x80 { i -= 1; back += 1 }
        guard i >= 0 else { return bytes.count }
        let need = utf8Length(bytes[i])
        return bytes.count - i >= need ? bytes.count : i
    }
}

/// Errors building a tokenizer from model metadata.
public enum TokenizerError: LocalizedError, Sendable {
    case unsupportedModel(String)
    case missingMerges

    public var errorDescription: String? {
        switch self {
        case .unsupportedModel(let name): return "tokenizer model `\(name)` is not supported (llama and gpt2 are)"
        case .missingMerges: return "a gpt2 tokenizer needs tokenizer.ggml.merges"
        }
    }
}

/// The tokenizer a GGUF file describes: SentencePiece-style (`llama`) or byte-level BPE (`gpt2`).
public final class GGUFTokenizer: Tokenizer, @unchecked Sendable {
    public let vocabulary: Vocabulary
    public let modelName: String
    private let specials: SpecialTokenMatcher
    private let spm: SentencePieceModel?
    private let bpe: BytePairModel?
    /// Bytes each token decodes to (control tokens: their text).
    private let pieces: [[UInt8]]

    public init(vocabulary: Vocabulary, model: String, merges: [String] = [], pre: String = "default") throws {
        self.vocabulary = vocabulary
        self.modelName = model
        specials = SpecialTokenMatcher(vocabulary: vocabulary)
        switch model {
        case "llama":
            spm = SentencePieceModel(vocabulary: vocabulary)
            bpe = nil
            pieces = vocabulary.tokens.enumerated().map { i, text in
                if vocabulary.types[i] == .byte, text.count == 6, text.hasPrefix("<0x"), let b = UInt8(text.dropFirst(3).prefix(2), radix: 16) {
                    return [b]
                }
                return Self.spaceMarkersAsSpaces(text)
            }
        case "gpt2":
            guard !merges.isEmpty else { throw TokenizerError.missingMerges }
            spm = nil
            bpe = try BytePairModel(vocabulary: vocabulary, merges: merges, pre: pre)
            pieces = vocabulary.tokens.enumerated().map { i, text in
                let type = vocabulary.types[i]
                if type == .control || type == .userDefined { return Array(text.utf8) }
                return ByteLevel.decode(text) ?? Array(text.utf8)
            }
        default:
            throw TokenizerError.unsupportedModel(model)
        }
    }

    /// A SentencePiece piece's UTF-8 bytes with each "▁" (U+2581, E2 96 81) as a space: a byte
    /// scan, since 262 144 `replacingOccurrences` calls took most of gemma's load time.
    static func spaceMarkersAsSpaces(_ text: String) -> [UInt8] {
        let utf8 = Array(text.utf8)
        guard utf8.contains(0xE2) else { return utf8 }
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0xE2, i + 2 < utf8.count, utf8[i + 1] == 0x96, utf8[i + 2] == 0x81 {
                out.append(0x20)
                i += 3
            } else {
                out.append(utf8[i])
                i += 1
            }
        }
        return out
    }

    /// Builds the tokenizer from `tokenizer.ggml.*` metadata.
    public convenience init(file: GGUFFile) throws {
        let model = (try? file.string("tokenizer.ggml.model")) ?? "llama"
        let merges = file.metadata["tokenizer.ggml.merges"]?.arrayValue?.compactMap(\.stringValue) ?? []
        let pre = (try? file.string("tokenizer.ggml.pre")) ?? "default"
        try self.init(vocabulary: try Vocabulary.load(from: file), model: model, merges: merges, pre: pre)
    }

    public func encode(_ text: String, addBOS: Bool?, parseSpecial: Bool) -> [Int32] {
        var out: [Int32] = []
        if addBOS ?? vocabulary.addBOS, let bos = vocabulary.bos { out.append(bos) }
        var isFirst = true
        for fragment in specials.partition(Array(text.utf8), parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id): out.append(id)
            case .text(let bytes):
                if let spm { spm.encode(bytes, isFirst: isFirst, into: &out) } else { bpe?.encode(bytes, into: &out) }
            }
            isFirst = false
        }
        return out
    }

    public func pieceBytes(_ id: Int32, skipSpecial: Bool) -> [UInt8] {
        guard id >= 0, Int(id) < pieces.count else { return [] }
        if skipSpecial, vocabulary.types[Int(id)] == .control { return [] }
        return pieces[Int(id)]
    }
}
