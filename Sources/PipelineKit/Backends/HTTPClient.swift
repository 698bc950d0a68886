import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

/// Blocking JSON POSTs over URLSession with a per-request timeout. Headers are never part of an
/// error message (the API key travels in one).
final class HTTPClient: @unchecked Sendable {
    let session: URLSession
    let timeout: Double

    init(timeout: Double) {
        self.timeout = timeout
        // URLSession's own timeouts are a backstop only: on Linux they are whole seconds (a
        // sub-second value fires at once); the exact deadline is the wait in `post`.
        let backstop = max(1, timeout.rounded(.up)) + 1
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = backstop
        configuration.timeoutIntervalForResource = backstop
        configuration.httpMaximumConnectionsPerHost = 64
        session = URLSession(configuration: configuration)
    }

    func post(_ url: URL, json: [String: Any], headers: [String: String]) -> Result<HTTPResponse, AttemptFailure> {
        var request = URLRequest(url: url, timeoutInterval: max(1, timeout.rounded(.up)) + 1)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        do { request.httpBody = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]) } catch {
            return .failure(AttemptFailure(message: "cannot encode the request: \(error)", retryable: false))
        }
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: Result<HTTPResponse, AttemptFailure> = .failure(AttemptFailure(message: "no response", retryable: true))
        let task = session.dataTask(with: request) { data, response, error in
            if let error {
                let timedOut = (error as? URLError)?.code == .timedOut
                result = .failure(AttemptFailure(message: timedOut ? "timed out after \(self.timeout) s" : "connection failed: \(error.localizedDescription)",
                                                 retryable: true))
            } else if let http = response as? HTTPURLResponse {
                var headers: [String: String] = [:]
                for (k, v) in http.allHeaderFields { headers["\(k)"] = "\(v)" }
                result = .success(HTTPResponse(status: http.statusCode, headers: headers, body: data ?? Data()))
            }
            done.signal()
        }
        task.resume()
        // The whole request, connection to last byte, within `timeout`.
        if done.wait(timeout: .now() + timeout) == .timedOut {
            task.cancel()
            _ = done.wait(timeout: .now() + 5)
            return .failure(AttemptFailure(message: "timed out after \(timeout) s", retryable: true))
        }
        return result
    }
}
