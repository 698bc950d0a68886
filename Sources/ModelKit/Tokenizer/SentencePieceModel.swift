/// SentencePiece-style tokenization (`tokenizer.ggml.model = llama`), as llama.cpp's
/// llm_tokenizer_spm does it: spaces become ▁, text starts as UTF-8 characters, and the
/// adjacent pair whose concatenation is a token with the highest score is merged until none
/// is left (ties: the leftmost pair). Characters that are not tokens fall back to `<0xNN>`.
struct SentencePieceModel: Sendable {
    let vocabulary: Vocabulary
    /// `<0xNN>` token ids by byte value.
    private let byteTokens: [Int32?]

    init(vocabulary: Vocabulary) {
        self.vocabulary = vocabulary
        byteTokens = (0..<256).map { vocabulary.id(of: String(format: "<0x%02X>", $0)) }
    }

    private struct Symbol {
        var start: Int
        var length: Int
        var prev: Int
        var next: Int
    }

    private struct Bigram {
        var left: Int
        var right: Int
        var score: Float
        var size: Int
    }

    /// Tokenizes one text fragment (no special tokens inside). `isFirst` applies the space prefix.
    func encode(_ raw: [UInt8], isFirst: Bool, into out: inout [Int32]) {
        // Replace ' ' with ▁ (U+2581, E2 96 81), optionally prefixing one (llama_escape_whitespace).
        var text: [UInt8] = []
        text.reserveCapacity(raw.count + 8)
        if vocabulary.addSpacePrefix && isFirst { text += [0xE2, 0x96, 0x81] }
        for b in raw { if b == 0x20 { text += [0xE2, 0x96, 0x81] } else { text.append(b) } }
        guard !text.isEmpty else { return }

        var symbols: [Symbol] = []
        var offset = 0
        while offset < text.count {
            let length = min(utf8Length(text[offset]), text.count - offset)
            symbols.append(Symbol(start: offset, length: length, prev: symbols.count - 1, next: symbols.count + 1))
            offset += length
        }
        symbols[symbols.count - 1].next = -1

        // Highest score first; ties go to the leftmost pair.
        var queue = BinaryHeap<Bigram> { a, b in a.score > b.score || (a.score == b.score && a.left < b.left) }
        func addBigram(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let start = symbols[left].start
            let size = symbols[left].length + symbols[right].length
            guard let id = vocabulary.id(of: Array(text[start..<(start + size)])) else { return }
            queue.push(Bigram(left: left, right: right, score: vocabulary.scores[Int(id)], size: size))
        }
        for i in 1..<symbols.count { addBigram(i - 1, i) }

        while let bigram = queue.pop() {
            let left = symbols[bigram.left], right = symbols[bigram.right]
            // Skip entries made stale by earlier merges.
            guard left.length > 0, right.length > 0, left.length + right.length == bigram.size else { continue }
            symbols[bigram.left].length += right.length
            symbols[bigram.right].length = 0
            symbols[bigram.left].next = right.next
            if right.next >= 0 { symbols[right.next].prev = bigram.left }
            addBigram(left.prev, bigram.left)
            addBigram(bigram.left, right.next)
        }

        var i = 0
        while i >= 0 && i < symbols.count {
            let s = symbols[i]
            let piece = Array(text[s.start..<(s.start + s.length)])
            if let id = vocabulary.id(of: piece) {
                out.append(id)
            } else {
                for b in piece {
                    if let id = byteTokens[Int(b)] { out.append(id) } else if let unk = vocabulary.unknown { out.append(unk) }
                }
            }
            i = s.next
        }
    }
}

/// Length of the UTF-8 sequence a lead byte starts (1 for stray continuation bytes).
@inline(__always)
func utf8Length(_ lead: UInt8) -> Int {
    switch lead {
    case 0xF0...0xF7: return 4
    case 0xE0...0xEF: return 3
    case 0xC0...0xDF: return 2
    default: return 1
    }
}
