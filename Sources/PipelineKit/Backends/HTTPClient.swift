import CCurl
import Foundation

/// Retries of a remote call: exponential backoff with full jitter, capped, never shorter than a
/// server's `Retry-After`.
public struct RetryPolicy: Sendable, Equatable {
    /// Attempts in all (the first one included).
    public var attempts = 6
    public var baseDelay = 0.5
    public var maxDelay = 30.0

    public init(attempts: Int = 6, baseDelay: Double = 0.5, maxDelay: Double = 30) {
        self.attempts = attempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// Seconds to wait before attempt `attempt + 1` (attempt counts from 0).
    public func delay(after attempt: Int, retryAfter: Double?) -> Double {
        let backoff = min(maxDelay, baseDelay * pow(2, Double(attempt))) * Double.random(in: 0.5...1)
        return max(backoff, min(retryAfter ?? 0, maxDelay * 4))
    }

    /// HTTP statuses worth another attempt: timeouts, conflicts, rate limits, server errors.
    public static func retryable(_ status: Int) -> Bool { [408, 409, 425, 429].contains(status) || status >= 500 }
}

/// One HTTP response.
struct HTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: Data

    /// `Retry-After` in seconds (a number or an HTTP date).
    var retryAfter: Double? {
        guard let value = headers.first(where: { $0.key.lowercased() == "retry-after" })?.value else { return nil }
        if let seconds = Double(value.trimmingCharacters(in: .whitespaces)) { return max(0, seconds) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: value).map { max(0, $0.timeIntervalSinceNow) }
    }
}

/// Why an attempt failed, and whether another attempt may succeed.
struct AttemptFailure: Error {
    var message: String
    var retryable: Bool
    var retryAfter: Double?
}

/// Blocking JSON POSTs over libcurl with a per-request timeout covering connection to last
/// byte. Handles (and so their connections) are reused across requests. Headers are never part
/// of an error message (the API key travels in one).
final class HTTPClient: @unchecked Sendable {
    let timeout: Double
    private let lock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []

    init(timeout: Double) { self.timeout = timeout }

    deinit { for handle in idle { ccurl_handle_free(handle) } }

    func post(_ url: URL, json: [String: Any], headers: [String: String]) -> Result<HTTPResponse, AttemptFailure> {
        let body: Data
        do { body = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) } catch {
            return .failure(AttemptFailure(message: "cannot encode the request: \(error)", retryable: false))
        }
        guard let handle = lock.withLock({ idle.popLast() }) ?? ccurl_handle_new() else {
            return .failure(AttemptFailure(message: "libcurl could not start a request", retryable: false))
        }
        defer { lock.withLock { idle.append(handle) } }
        let headerLines: [String] = ["Content-Type: application/json"] + headers.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
        let lines: [UnsafeMutablePointer<CChar>?] = headerLines.map { strdup($0) }
        defer { lines.forEach { free($0) } }
        var response = ccurl_response()
        defer { ccurl_response_free(&response) }
        let cLines: [UnsafePointer<CChar>?] = lines.map { $0.map { UnsafePointer($0) } }
        body.withUnsafeBytes { raw in
            ccurl_post(handle, url.absoluteString, cLines, Int32(cLines.count), raw.bindMemory(to: CChar.self).baseAddress, body.count,
                       max(1, Int((timeout * 1000).rounded())), &response)
        }
        guard response.curl_code == 0 else {
            let detail = withUnsafeBytes(of: &response.error) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            // 28: CURLE_OPERATION_TIMEDOUT; 1 and 3: unsupported protocol, malformed URL.
            if response.curl_code == 28 { return .failure(AttemptFailure(message: "timed out after \(timeout) s", retryable: true)) }
            return .failure(AttemptFailure(message: "connection failed: \(detail)", retryable: ![1, 3].contains(response.curl_code)))
        }
        var fields: [String: String] = [:]
        if let raw = response.headers {
            for line in String(decoding: Data(bytes: raw, count: response.headers_length), as: UTF8.self).split(separator: "\r\n").dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let data = response.body.map { Data(bytes: $0, count: response.body_length) } ?? Data()
        return .success(HTTPResponse(status: response.status, headers: fields, body: data))
    }
}
