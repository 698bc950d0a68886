import Foundation

/// Regex pre-tokenization for byte-level BPE, chosen by `tokenizer.ggml.pre` with the
/// expressions llama.cpp uses for each name (llama-vocab.cpp). Several expressions apply in
/// turn, each splitting the pieces the previous one produced; text between matches is kept
/// as its own piece, as in llama.cpp's unicode_regex_split.
struct PreTokenizer: @unchecked Sendable {
    let name: String
    private let expressions: [NSRegularExpression]

    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"#
    static let llama3 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The expressions for a `tokenizer.ggml.pre` value; unknown names get llama.cpp's default.
    static func patterns(for name: String) -> [String] {
        switch name {
        case "llama3", "llama-bpe", "llama-v3", "dbrx", "smaug-bpe": return [llama3]
        case "qwen2", "deepseek-r1-qwen", "stablelm2", "hunyuan": return [qwen2]
        case "smollm", "codeshell", "exaone", "minerva-7b", "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de",
             "jina-v2-es", "jina-v2-de", "jina-v2-code", "refact", "command-r", "olmo":
            return name == "gpt2" || name == "gpt-2" || name == "phi-2" || name == "olmo" ? [gpt2] : [#"\p{N}"#, gpt2]
        default:
            return [#"[\p{P}\$\+<=>\^~\|]+"#, gpt2, #"\p{N}+"#, "[0-9][0-9][0-9]"]
        }
    }

    init(name: String) throws {
        self.name = name
        expressions = try Self.patterns(for: name).map { try NSRegularExpression(pattern: $0) }
    }

    /// Splits text into pieces (UTF-8 bytes each).
    func split(_ text: [UInt8]) -> [[UInt8]] {
        var pieces = [String(decoding: text, as: UTF8.self)]
        for expression in expressions {
            var next: [String] = []
            for piece in pieces {
                let ns = piece as NSString
                var last = 0
                for match in expression.matches(in: piece, range: NSRange(location: 0, length: ns.length)) {
                    let r = match.range
                    guard r.length > 0 else { continue }
                    if r.location > last { next.append(ns.substring(with: NSRange(location: last, length: r.location - last))) }
                    next.append(ns.substring(with: r))
                    last = r.location + r.length
                }
                if last < ns.length { next.append(ns.substring(from: last)) }
            }
            pieces = next
        }
        return pieces.map { Array($0.utf8) }
    }
}
