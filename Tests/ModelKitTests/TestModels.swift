import Foundation
import Testing
@testable import ModelKit

/// The reference models and llama.cpp's outputs for them (Fixtures/reference, committed with
/// their provenance). scripts/test.sh fetches both models into the cache before the tests run.
enum TestModels {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let referenceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/reference")

    static let gemmaName = "gemma-3-270m"
    static let qwenName = "qwen2.5-coder-0.5b-instruct"

    static func path(_ name: String) -> URL? {
        let store = ModelStore()
        guard let entry = ModelCatalog.entry(named: name) else { return nil }
        let url = store.path(for: entry)
        return FileManager.default.fileExists(atPath: url.path) ? url : nil
    }

    /// Whether the model file is in the model cache (the reference data is committed). Under CI
    /// (`CI=true`) this is always true, so a missing model fails the tests instead of skipping them.
    static func available(_ name: String) -> Bool {
        if ProcessInfo.processInfo.environment["CI"] == "true" { return true }
        return path(name) != nil
    }

    static func file(_ name: String) throws -> GGUFFile {
        try GGUFFile(path: try #require(path(name), "model \(name) is not cached; run `precept model pull \(name)`").path)
    }

    nonisolated(unsafe) private static var tokenizers: [String: GGUFTokenizer] = [:]
    private static let lock = NSLock()

    static func tokenizer(_ name: String) throws -> GGUFTokenizer {
        lock.lock()
        defer { lock.unlock() }
        if let t = tokenizers[name] { return t }
        let t = try GGUFTokenizer(file: try file(name))
        tokenizers[name] = t
        return t
    }

    static func reference<T: Decodable>(_ name: String, _ file: String, as type: T.Type) throws -> T {
        let url = referenceRoot.appendingPathComponent(name).appendingPathComponent(file)
        return try JSONDecoder().decode(T.self, from: Data(contentsOf: url))
    }
}

struct TokenReference: Decodable {
    let text: String
    let ids: [Int32]
    let ids_with_bos: [Int32]
    let ids_special: [Int32]
}
