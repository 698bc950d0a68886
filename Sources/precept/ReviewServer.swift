import FlyingFox
import FlyingSocks
import Foundation
import PipelineKit

/// The HTTP side of `precept review RUN`: one page and three JSON routes over a `ReviewSession`.
///
/// - `GET /?token=T` serves the page; `GET /api/state` the items; `POST /api/label` and
///   `POST /api/undo` write (see `ReviewSession`).
/// - Every request needs the access token: in the page's query, and in the `X-Precept-Token`
///   header for the API. Without it: 403.
/// - Writes also need a same-origin request (`Origin` equal to the server's own origin, and
///   `Sec-Fetch-Site` same-origin when the browser sends it), a JSON content type and a body
///   of at most `maxBody` bytes with a `Content-Length`.
/// - On loopback the `Host` header must name the server (no DNS rebinding).
/// - Responses carry a Content-Security-Policy that allows only the page's own nonce'd
///   script and style and requests to the server itself.
struct ReviewServer: HTTPHandler {
    static let maxBody = 256 * 1024
    let session: ReviewSession
    let token: String
    let host: String
    /// The port listened on (known once listening, when `--port 0` asks for any free one).
    let port: LockedBox<UInt16>

    var loopback: Bool { Self.isLoopback(host) }

    /// Whether `--host` keeps the app on this machine.
    static func isLoopback(_ host: String) -> Bool { ["127.0.0.1", "::1", "localhost"].contains(host) }

    func handleRequest(_ request: HTTPRequest) async throws -> HTTPResponse {
        if loopback {
            let port = self.port.value
            // A browser leaves out the default port.
            let allowed = ["127.0.0.1", "localhost", "[::1]"].flatMap { port == 80 ? [$0, "\($0):80"] : ["\($0):\(port)"] }
            guard let hostHeader = request.headers[.host], allowed.contains(hostHeader.lowercased()) else {
                return error(.forbidden, "the Host header does not name this server")
            }
        }
        switch (request.method, request.path) {
        case (.GET, "/"):
            guard Self.same(request.query["token"], token) else {
                return error(.forbidden, "open the URL `precept review` printed: it carries the access token")
            }
            let nonce = Self.randomHex(bytes: 16)
            var headers = Self.securityHeaders(nonce: nonce)
            headers[.contentType] = "text/html; charset=utf-8"
            return HTTPResponse(statusCode: .ok, headers: headers, body: Data(ReviewPage.html(nonce: nonce).utf8))
        case (.GET, "/api/state"):
            guard Self.same(request.headers[HTTPHeader("X-Precept-Token")], token) else { return error(.forbidden, "missing or wrong access token") }
            return json(try await onStoreQueue { try session.state() })
        case (.POST, "/api/label"), (.POST, "/api/undo"):
            if let refusal = checkWrite(request) { return refusal }
            let data: Data
            do { data = try await request.bodyData } catch { return self.error(.badRequest, "could not read the request body") }
            guard data.count <= Self.maxBody else { return self.error(.payloadTooLarge, "the body is over \(Self.maxBody) bytes") }
            guard let body = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                return self.error(.badRequest, "the body is not a JSON object")
            }
            do {
                if request.path == "/api/undo" {
                    guard let id = (body["id"] as? NSNumber)?.int64Value else { return self.error(.badRequest, "`id` is required") }
                    return json(try await onStoreQueue { try session.undo(id: id) })
                }
                nonisolated(unsafe) let action = body
                return json(try await onStoreQueue { try session.act(action) })
            } catch let refused as ReviewSession.Refused {
                return self.error(session.readOnly ? .forbidden : (refused.conflict ? .conflict : .badRequest), refused.message)
            }
        default:
            return error(.notFound, "no such page")
        }
    }

    /// A refusal for a write that lacks the token, is cross-origin, or has a body we do not take.
    func checkWrite(_ request: HTTPRequest) -> HTTPResponse? {
        guard Self.same(request.headers[HTTPHeader("X-Precept-Token")], token) else { return error(.forbidden, "missing or wrong access token") }
        guard let origin = request.headers[HTTPHeader("Origin")], let hostHeader = request.headers[.host],
              origin.lowercased() == "http://\(hostHeader.lowercased())" else {
            return error(.forbidden, "writes must come from the review page itself (same origin)")
        }
        if let site = request.headers[HTTPHeader("Sec-Fetch-Site")], site != "same-origin" {
            return error(.forbidden, "writes must come from the review page itself (Sec-Fetch-Site: \(site))")
        }
        guard request.headers[.contentType]?.lowercased().hasPrefix("application/json") == true else {
            return error(.unsupportedMediaType, "send JSON (Content-Type: application/json)")
        }
        guard let length = request.headers[.contentLength].flatMap(Int.init) else { return error(.lengthRequired, "Content-Length is required") }
        guard length <= Self.maxBody else { return error(.payloadTooLarge, "the body is over \(Self.maxBody) bytes") }
        if session.readOnly { return error(.forbidden, "this review is read-only (--read-only)") }
        return nil
    }

    /// Store work (SQLite, which may wait up to 10 s for a running `precept run`) runs on its own
    /// queue, one call at a time, so the server's few threads keep accepting connections.
    static let storeQueue = DispatchQueue(label: "precept.review.store")

    func onStoreQueue(_ body: @escaping @Sendable () throws -> [String: Any]) async throws -> [String: Any] {
        let result: Result<LockedBox<[String: Any]>, Error> = await withCheckedContinuation { continuation in
            Self.storeQueue.async { continuation.resume(returning: Result { LockedBox(try body()) }) }
        }
        return try result.get().value
    }

    func json(_ object: Any, status: HTTPStatusCode = .ok) -> HTTPResponse {
        var headers = Self.securityHeaders(nonce: nil)
        headers[.contentType] = "application/json"
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return HTTPResponse(statusCode: status, headers: headers, body: data)
    }

    func error(_ status: HTTPStatusCode, _ message: String) -> HTTPResponse { json(["error": message], status: status) }

    static func securityHeaders(nonce: String?) -> HTTPHeaders {
        var headers = HTTPHeaders()
        let scripts = nonce.map { "script-src 'nonce-\($0)'; style-src 'nonce-\($0)'; " } ?? ""
        headers[HTTPHeader("Content-Security-Policy")] =
            "default-src 'none'; \(scripts)connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        headers[HTTPHeader("X-Content-Type-Options")] = "nosniff"
        // The page's URL carries the token: never send it on.
        headers[HTTPHeader("Referrer-Policy")] = "no-referrer"
        headers[.cacheControl] = "no-store"
        return headers
    }

    /// Constant-time comparison of a presented token with the real one.
    static func same(_ presented: String?, _ token: String) -> Bool {
        guard let presented else { return false }
        let a = Array(presented.utf8), b = Array(token.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func randomHex(bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// Serves until the process is stopped; prints the URL (with the token) on standard output.
    static func serve(session: ReviewSession, host: String, port: UInt16) throws {
        // A process started from a thread that blocks signals (a test runner's worker, say)
        // inherits the mask; the server must still stop on Ctrl-C and `kill`.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&stopSignals, s) }
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
        let token = randomHex(bytes: 24)
        let address: any SocketAddress
        do {
            address = host.contains(":") ? try sockaddr_in6.inet6(ip6: host, port: port)
                : try sockaddr_in.inet(ip4: host == "localhost" ? "127.0.0.1" : host, port: port)
        } catch {
            throw ReviewServeError.badHost(host)
        }
        let done = DispatchSemaphore(value: 0)
        let failure = LockedBox<Error?>(nil)
        Task {
            let server = HTTPServer(address: address, timeout: 30, logger: .disabled)
            let boundPort = LockedBox(port)
            await server.appendRoute("*", to: ReviewServer(session: session, token: token, host: host, port: boundPort))
            do {
                let waiting = Task { try await server.run() }
                do { try await server.waitUntilListening(timeout: 10) } catch {
                    // Not listening: the server's own error (say, the port is taken) says why.
                    do { try await waiting.value } catch { throw ReviewServeError.cannotListen(host: host, port: port, reason: "\(error)") }
                    throw ReviewServeError.cannotListen(host: host, port: port, reason: "\(error)")
                }
                guard case .some(let bound) = await server.listeningAddress else { throw ReviewServeError.badHost(host) }
                switch bound {
                case .ip4(_, let p), .ip6(_, let p): boundPort.value = p
                case .unix: break
                }
                let shownHost = host.contains(":") ? "[\(host)]" : host
                print("precept review: http://\(shownHost):\(boundPort.value)/?token=\(token)")
                print("  reviewer \(session.reviewer)\(session.readOnly ? " · read-only" : "") · each action is written to \(session.directory.appendingPathComponent("run.sqlite").path) at once · Ctrl-C stops")
                fflush(stdout)
                try await waiting.value
            } catch {
                failure.value = error
            }
            done.signal()
        }
        done.wait()
        if let error = failure.value { throw error }
    }
}

enum ReviewServeError: LocalizedError {
    case badHost(String)
    case cannotListen(host: String, port: UInt16, reason: String)
    var errorDescription: String? {
        switch self {
        case .badHost(let host): return "--host `\(host)` is not an IPv4 or IPv6 address this machine can listen on"
        case .cannotListen(let host, let port, let reason):
            return "cannot listen on \(host):\(port) (\(reason)); is another server using the port? Try --port 0 for any free one"
        }
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: T
    init(_ value: T) { stored = value }
    var value: T {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
