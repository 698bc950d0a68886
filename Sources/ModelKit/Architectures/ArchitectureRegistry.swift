import Foundation

/// Maps `general.architecture` to the function reading that family's configuration.
public enum ArchitectureRegistry {
    public static let configurations: [String: @Sendable (GGUFFile) throws -> TransformerConfig] = {
        var table: [String: @Sendable (GGUFFile) throws -> TransformerConfig] = ["gemma3": { try Gemma3.config($0) }]
        for name in Llama.architectures { table[name] = { try Llama.config($0) } }
        return table
    }()

    public static var supported: [String] { configurations.keys.sorted() }

    public static func config(for file: GGUFFile) throws -> TransformerConfig {
        let name = try file.string("general.architecture")
        guard let make = configurations[name] else {
            throw GGUFError.invalid(path: file.path, offset: 0,
                                    message: "architecture `\(name)` is not supported (supported: \(supported.joined(separator: ", ")))")
        }
        return try make(file)
    }
}
