import Foundation

/// Removes credentials from text before it is printed or stored: the user:password part of
/// URLs, key-like query parameters (`?api_key=…`, `&token=…`), bearer tokens, and the values
/// of keys this process holds (an API key a server echoes back in an error body).
public enum Secrets {
    static let mask = "***"
    /// URL credentials and key-like query parameters: safe to apply to any text, a pipeline file
    /// included (they only match inside URLs).
    private static let urlPatterns: [(NSRegularExpression, String)] = [
        // scheme://user:password@host → scheme://***@host
        (try! NSRegularExpression(pattern: #"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@"'<>]+@"#), "$1\(mask)@"),
        // ?api_key=… &token=… &subscription-key=… (any *key, token, secret, password, auth, sig, code)
        (try! NSRegularExpression(pattern: #"([?&;](?:[A-Za-z0-9_-]*(?:key|token|secret|password|passwd|auth|signature|sig)|code)=)[^&#\s"'<>]+"#,
                                  options: [.caseInsensitive]), "$1\(mask)"),
    ]
    /// Authorization header values, for messages (not applied to stored configuration text,
    /// where "Basic …" may be ordinary prose).
    private static let tokenPatterns: [(NSRegularExpression, String)] = [
        (try! NSRegularExpression(pattern: #"((?:Bearer|Basic)\s+)[A-Za-z0-9._~+/=-]{4,}"#, options: [.caseInsensitive]), "$1\(mask)"),
    ]

    /// `text` with credentials masked; each of `values` (e.g. the API key in use) is masked
    /// wherever it appears. `headers: false` leaves "Bearer …"-like words alone (for stored
    /// pipeline text, where only URLs can hold credentials).
    public static func redact(_ text: String, values: [String?] = [], headers: Bool = true) -> String {
        var out = text
        for value in values.compactMap({ $0 }) where value.count >= 4 {
            out = out.replacingOccurrences(of: value, with: mask)
        }
        for (regex, template) in urlPatterns + (headers ? tokenPatterns : []) {
            out = regex.stringByReplacingMatches(in: out, range: NSRange(out.startIndex..., in: out), withTemplate: template)
        }
        return out
    }
}
