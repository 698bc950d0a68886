import Foundation

/// Removes credentials from text before it is printed or stored: the user:password part of
/// URLs, key-like query parameters (`?api_key=…`, `&token=…`), bearer tokens, and the values
/// of keys this process holds (an API key a server echoes back in an error body).
public enum Secrets {
    static let mask = "***"
    private static let patterns: [(NSRegularExpression, String)] = [
        // scheme://user:password@host → scheme://***@host
        (try! NSRegularExpression(pattern: #"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@"'<>]+@"#), "$1\(mask)@"),
        // ?api_key=… &token=… (and key, access_token, secret, password, auth, sig)
        (try! NSRegularExpression(pattern: #"([?&;](?:[A-Za-z0-9_-]*(?:api[_-]?key|apikey|token|secret|password|passwd|auth|signature|sig)|key)=)[^&#\s"'<>]+"#,
                                  options: [.caseInsensitive]), "$1\(mask)"),
        // Authorization: Bearer … / Basic …
        (try! NSRegularExpression(pattern: #"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{4,}"#), "$1\(mask)"),
    ]

    /// `text` with credentials masked; each of `values` (e.g. the API key in use) is masked
    /// wherever it appears.
    public static func redact(_ text: String, values: [String?] = []) -> String {
        var out = text
        for value in values.compactMap({ $0 }) where value.count >= 4 {
            out = out.replacingOccurrences(of: value, with: mask)
        }
        for (regex, template) in patterns {
            out = regex.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: template)
        }
        return out
    }
}
