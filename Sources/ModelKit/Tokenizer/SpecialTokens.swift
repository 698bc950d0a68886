/// A piece of input: raw text still to be tokenized, or a special token already recognised.
enum Fragment: Equatable {
    case text([UInt8])
    case token(Int32)
}

/// Splits text around special tokens before the tokenizer model runs, as llama.cpp's
/// tokenizer_st_partition does: user-defined tokens always, control tokens only when
/// `parseSpecial` is set; longer tokens are matched first, each across all fragments.
struct SpecialTokenMatcher: Sendable {
    /// (bytes, id, isControl), longest first (ties: lower id first).
    private let specials: [(bytes: [UInt8], id: Int32, control: Bool)]
    /// First bytes of any special token, to skip texts that cannot contain one.
    private let firstBytes: Set<UInt8>

    init(vocabulary: Vocabulary) {
        var list: [(bytes: [UInt8], id: Int32, control: Bool)] = []
        for (i, type) in vocabulary.types.enumerated() where type == .control || type == .userDefined || type == .unknown {
            let bytes = vocabulary.tokenBytes[i]
            guard !bytes.isEmpty else { continue }
            list.append((bytes, Int32(i), type != .userDefined))
        }
        list.sort { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
        specials = list
        firstBytes = Set(list.map { $0.bytes[0] })
    }

    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = [.text(text)]
        guard text.contains(where: { firstBytes.contains($0) }) else { return fragments }
        for special in specials where parseSpecial || !special.control {
            guard fragments.contains(where: { if case .text(let t) = $0 { return contains(t, special.bytes) } else { return false } })
            else { continue }
            var next: [Fragment] = []
            for fragment in fragments {
                guard case .text(let t) = fragment else { next.append(fragment); continue }
                var start = 0
                var i = 0
                while i + special.bytes.count <= t.count {
                    if t[i] == special.bytes[0] && t[i..<(i + special.bytes.count)].elementsEqual(special.bytes) {
                        if i > start { next.append(.text(Array(t[start..<i]))) }
                        next.append(.token(special.id))
                        i += special.bytes.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < t.count { next.append(.text(Array(t[start...]))) }
            }
            fragments = next
        }
        return fragments
    }

    private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard needle.count <= haystack.count else { return false }
        var i = 0
        while i + needle.count <= haystack.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return true }
            i += 1
        }
        return false
    }
}
