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
        var pieces: [Piece] = []
        func push(_ piece: Piece) {
            switch (pieces.last, piece) {
            case (.same(let x)?, .same(let y)): pieces[pieces.count - 1] = .same(x + " " + y)
            case (.removed(let x)?, .removed(let y)): pieces[pieces.count - 1] = .removed(x + " " + y)
            case (.added(let x)?, .added(let y)): pieces[pieces.count - 1] = .added(x + " " + y)
            default: pieces.append(piece)
            }
        }
        script(a, b, removedFirst: true).forEach(push)
        return pieces
    }

    /// The longest-common-subsequence edit script from `a` to `b`, one element a piece. Where
    /// dropping a[i] and taking b[j] keep the same LCS, `removedFirst` puts the removal first.
    static func script(_ a: [String], _ b: [String], removedFirst: Bool) -> [Piece] {
        // lcs[i][j]: length of the LCS of a[i...] and b[j...].
        var lcs = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in stride(from: a.count - 1, through: 0, by: -1) {
            for j in stride(from: b.count - 1, through: 0, by: -1) {
                lcs[i][j] = a[i] == b[j] ? lcs[i + 1][j + 1] + 1 : max(lcs[i + 1][j], lcs[i][j + 1])
            }
        }
        var out: [Piece] = [], i = 0, j = 0
        while i < a.count || j < b.count {
            if i < a.count && j < b.count && a[i] == b[j] {
                out.append(.same(a[i])); i += 1; j += 1
            } else if j == b.count || (i < a.count && (removedFirst ? lcs[i + 1][j] >= lcs[i][j + 1] : lcs[i + 1][j] > lcs[i][j + 1])) {
                out.append(.removed(a[i])); i += 1
            } else {
                out.append(.added(b[j])); j += 1
            }
        }
        return out
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
