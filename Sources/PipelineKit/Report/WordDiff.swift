/// A word-level diff (longest common subsequence over whitespace-separated words), for
/// showing reviewers what a revision changed.
public enum WordDiff {
    public enum Piece: Equatable, Sendable {
        case same(String)
        case removed(String)
        case added(String)
    }

    /// Pieces that turn `old` into `new`; consecutive words of one kind are merged.
    public static func diff(_ old: String, _ new: String) -> [Piece] {
        let a = old.split(whereSeparator: \.isWhitespace).map(String.init)
        let b = new.split(whereSeparator: \.isWhitespace).map(String.init)
        // lcs[i][j]: length of the LCS of a[i...] and b[j...].
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        if !a.isEmpty && !b.isEmpty {
            for i in stride(from: a.count - 1, through: 0, by: -1) {
                for j in stride(from: b.count - 1, through: 0, by: -1) {
                    lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
                }
            }
        }
        var pieces: [Piece] = []
        func push(_ piece: Piece) {
            switch (pieces.last, piece) {
            case (.same(let x)?, .same(let y)): pieces[pieces.count - 1] = .same(x + " " + y)
            case (.removed(let x)?, .removed(let y)): pieces[pieces.count - 1] = .removed(x + " " + y)
            case (.added(let x)?, .added(let y)): pieces[pieces.count - 1] = .added(x + " " + y)
            default: pieces.append(piece)
            }
        }
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if i < a.count && j < b.count && a[i] == b[j] {
                push(.same(a[i])); i += 1; j += 1
            } else if i < a.count && (j == b.count || lcs[i + 1][j] >= lcs[i][j + 1]) {
                push(.removed(a[i])); i += 1
            } else {
                push(.added(b[j])); j += 1
            }
        }
        return pieces
    }

    /// Plain-text rendering with git's word-diff markers: `[-removed-]` and `{+added+}`.
    public static func plain(_ pieces: [Piece]) -> String {
        pieces.map {
            switch $0 {
            case .same(let s): return s
            case .removed(let s): return "[-\(s)-]"
            case .added(let s): return "{+\(s)+}"
            }
        }.joined(separator: " ")
    }

    /// Terminal rendering: removed words red and struck through, added words green.
    public static func colored(_ pieces: [Piece]) -> String {
        pieces.map {
            switch $0 {
            case .same(let s): return s
            case .removed(let s): return "\u{1B}[31;9m\(s)\u{1B}[0m"
            case .added(let s): return "\u{1B}[32m\(s)\u{1B}[0m"
            }
        }.joined(separator: " ")
    }
}
