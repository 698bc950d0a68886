/// GPT-2 byte-level BPE (`tokenizer.ggml.model = gpt2`), as llama.cpp's llm_tokenizer_bpe:
/// pre-tokenize with the model's regexes, map each piece's bytes to visible characters, then
/// merge the adjacent pair with the lowest merge rank until none is left (ties: leftmost).
struct BytePairModel: Sendable {
    let vocabulary: Vocabulary
    let preTokenizer: PreTokenizer
    /// (left id << 32 | right id) → (rank, merged id).
    private let merges: [UInt64: (rank: Int32, merged: Int32)]

    init(vocabulary: Vocabulary, merges: [String], pre: String) throws {
        self.vocabulary = vocabulary
        preTokenizer = try PreTokenizer(name: pre)
        var table: [UInt64: (rank: Int32, merged: Int32)] = [:]
        table.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            // "left right": split at the first space after position 0 (a side is never empty).
            let bytes = Array(merge.utf8)
            guard let space = bytes.dropFirst().firstIndex(of: 0x20) else { continue }
            let left = Array(bytes[..<space]), right = Array(bytes[(space + 1)...])
            guard let l = vocabulary.id(of: left), let r = vocabulary.id(of: right),
                  let m = vocabulary.id(of: left + right) else { continue }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if table[key] == nil { table[key] = (Int32(rank), m) }
        }
        self.merges = table
    }

    private struct Pair {
        var left: Int
        var right: Int
        var rank: Int32
        var leftID: Int32
        var rightID: Int32
    }

    func encode(_ text: [UInt8], into out: inout [Int32]) {
        for piece in preTokenizer.split(text) where !piece.isEmpty {
            encodePiece(piece, into: &out)
        }
    }

    private func encodePiece(_ piece: [UInt8], into out: inout [Int32]) {
        let mapped = ByteLevel.encode(piece[...])
        // A whole piece that is a token (common words) needs no merging.
        if let id = vocabulary.id(of: mapped) {
            out.append(id)
            return
        }
        var ids: [Int32] = []
        var offset = 0
        while offset < mapped.count {
            let length = min(utf8Length(mapped[offset]), mapped.count - offset)
            ids.append(vocabulary.id(of: Array(mapped[offset..<(offset + length)])) ?? vocabulary.unknown ?? 0)
            offset += length
        }
        var prev = Array(-1..<(ids.count - 1)), next = Array(1...ids.count)
        next[ids.count - 1] = -1
        var alive = [Bool](repeating: true, count: ids.count)

        var queue = BinaryHeap<Pair> { a, b in a.rank < b.rank || (a.rank == b.rank && a.left < b.left) }
        func addPair(_ l: Int, _ r: Int) {
            guard l >= 0, r >= 0 else { return }
            let key = UInt64(UInt32(ids[l])) << 32 | UInt64(UInt32(ids[r]))
            guard let merge = merges[key] else { return }
            queue.push(Pair(left: l, right: r, rank: merge.rank, leftID: ids[l], rightID: ids[r]))
        }
        for i in 1..<ids.count { addPair(i - 1, i) }
        while let pair = queue.pop() {
            // Stale if either side was merged away or changed since the pair was queued.
            guard alive[pair.left], alive[pair.right], next[pair.left] == pair.right,
                  ids[pair.left] == pair.leftID, ids[pair.right] == pair.rightID else { continue }
            let key = UInt64(UInt32(pair.leftID)) << 32 | UInt64(UInt32(pair.rightID))
            ids[pair.left] = merges[key]!.merged
            alive[pair.right] = false
            next[pair.left] = next[pair.right]
            if next[pair.right] >= 0 { prev[next[pair.right]] = pair.left }
            addPair(prev[pair.left], pair.left)
            addPair(pair.left, next[pair.left])
        }
        var i = 0
        while i >= 0 {
            out.append(ids[i])
            i = next[i]
        }
    }
}
