import Foundation
import ModelKit
import Testing
import TestSupport

/// Runs the built `precept` executable and captures its output and exit status.
public struct CLIResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

public enum CLI {
    /// The `precept` binary next to the test bundle (SwiftPM builds it because the test target depends on it).
    public static let executable: URL = {
        var candidates: [URL] = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            candidates.append(bundle.bundleURL.deletingLastPathComponent())
        }
        for directory in candidates {
            let url = directory.appendingPathComponent("precept")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        return URL(fileURLWithPath: "precept-not-found")
    }()

    public static func run(_ arguments: [String], currentDirectory: URL? = nil, environment: [String: String] = [:],
                    executable: URL = CLI.executable, prefix: [String] = []) throws -> CLIResult {
        let process = Process()
        process.executableURL = prefix.isEmpty ? executable : URL(fileURLWithPath: prefix[0])
        process.arguments = prefix.isEmpty ? arguments : Array(prefix.dropFirst()) + [executable.path] + arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting so a large output cannot fill the pipe and block the child.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return CLIResult(status: process.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// The repository root, found from this file's path.
public let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fresh temporary directory for one test.
public func temporaryDirectory() throws -> URL {
    let url = scratchURL("precept-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Whether a catalog model is cached; under CI (`CI=true`) always true, so a missing model fails
/// the tests instead of skipping them.
public func modelAvailable(_ name: String) -> Bool {
    if ProcessInfo.processInfo.environment["CI"] == "true" { return true }
    guard let entry = ModelCatalog.entry(named: name) else { return false }
    return FileManager.default.fileExists(atPath: ModelStore().path(for: entry).path)
}
