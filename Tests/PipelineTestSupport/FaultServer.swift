import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.1 server on 127.0.0.1 (a free port) for the remote backend's tests. Every
/// request goes to `handler(path, headers, JSON body)`, which answers with a status, headers, a
/// raw body and an optional delay before answering (to provoke client timeouts). One connection
/// per request (`Connection: close`).
public final class FaultServer: @unchecked Sendable {
    public struct Reply {
        public var status = 200
        public var headers: [String: String] = [:]
        public var body: Data
        public var delay = 0.0

        public init(status: Int = 200, headers: [String: String] = [:], body: Data, delay: Double = 0) {
            (self.status, self.headers, self.body, self.delay) = (status, headers, body, delay)
        }

        public static func json(_ object: Any, status: Int = 200) -> Reply {
            Reply(status: status, body: try! JSONSerialization.data(withJSONObject: object))
        }
    }

    public let port: UInt16
    private let socketFD: Int32
    private let handler: (String, [String: String], [String: Any]) -> Reply
    private var running = true

    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    public init(handler: @escaping (String, [String: String], [String: Any]) -> Reply) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 128) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        socketFD = fd
        port = UInt16(bigEndian: address.sin_port)
        let thread = Thread { [unowned self] in self.acceptLoop() }
        thread.start()
    }

    public func stop() {
        running = false
        shutdown(socketFD, Int32(SHUT_RDWR))
        close(socketFD)
    }

    private func acceptLoop() {
        while running {
            let client = accept(socketFD, nil, nil)
            if client < 0 { if running { continue } else { return } }
            Thread { self.serve(client) }.start()   // a thread each: handlers sleep
        }
    }

    private func serve(_ client: Int32) {
        defer { close(client) }
        var buffer = [UInt8](), chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        var contentLength = 0
        while true {
            let n = read(client, &chunk, chunk.count)
            if n <= 0 { return }
            buffer += chunk[0..<n]
            if headerEnd == nil, let range = Data(buffer).range(of: Data("\r\n\r\n".utf8)) {
                headerEnd = range.upperBound
                let head = String(decoding: buffer[0..<range.lowerBound], as: UTF8.self)
                for line in head.split(separator: "\r\n").dropFirst() where line.lowercased().hasPrefix("content-length:") {
                    contentLength = Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
                }
            }
            if let end = headerEnd, buffer.count >= end + contentLength { break }
        }
        let end = headerEnd!
        let head = String(decoding: buffer[0..<(end - 4)], as: UTF8.self).split(separator: "\r\n")
        let path = head.first?.split(separator: " ").dropFirst().first.map(String.init) ?? "/"
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { headers[parts[0].lowercased()] = parts[1].trimmingCharacters(in: .whitespaces) }
        }
        let body = (try? JSONSerialization.jsonObject(with: Data(buffer[end..<(end + contentLength)]))) as? [String: Any] ?? [:]
        let reply = handler(path, headers, body)
        if reply.delay > 0 { Thread.sleep(forTimeInterval: reply.delay) }
        var text = "HTTP/1.1 \(reply.status) X\r\nContent-Type: application/json\r\nContent-Length: \(reply.body.count)\r\nConnection: close\r\n"
        for (k, v) in reply.headers { text += "\(k): \(v)\r\n" }
        let bytes = [UInt8]((text + "\r\n").utf8) + [UInt8](reply.body)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBufferPointer { write(client, $0.baseAddress, $0.count) }
            if n <= 0 { return }
            sent += n
        }
    }
}
