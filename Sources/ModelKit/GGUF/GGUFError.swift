import Foundation

/// Everything that can be wrong with a GGUF file. Offsets are byte offsets from the file start.
public enum GGUFError: LocalizedError, Sendable, Equatable {
    case cannotOpen(path: String, reason: String)
    case badMagic(path: String, found: UInt32)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, offset: Int, expected: String)
    case invalid(path: String, offset: Int, message: String)
    case unknownTensorType(path: String, tensor: String, type: UInt32)
    case missingKey(path: String, key: String)
    case wrongKeyType(path: String, key: String, expected: String)
    case missingTensor(path: String, name: String)
    case wrongShape(path: String, tensor: String, expected: [Int], found: [Int])

    public var errorDescription: String? {
        switch self {
        case .cannotOpen(let path, let reason): return "\(path): cannot open: \(reason)"
        case .badMagic(let path, let found):
            return "\(path): not a GGUF file (byte offset 0: expected magic 'GGUF', found 0x\(String(found, radix: 16)))"
        case .unsupportedVersion(let path, let version):
            return "\(path): byte offset 4: GGUF version \(version) is not supported (2 and 3 are)"
        case .truncated(let path, let offset, let expected):
            return "\(path): byte offset \(offset): file ends before \(expected)"
        case .invalid(let path, let offset, let message): return "\(path): byte offset \(offset): \(message)"
        case .unknownTensorType(let path, let tensor, let type):
            return "\(path): tensor \(tensor) has type \(type), which this engine cannot read"
        case .missingKey(let path, let key): return "\(path): metadata key \(key) is missing"
        case .wrongKeyType(let path, let key, let expected): return "\(path): metadata key \(key) is not \(expected)"
        case .missingTensor(let path, let name): return "\(path): tensor \(name) is missing"
        case .wrongShape(let path, let tensor, let expected, let found):
            return "\(path): tensor \(tensor) has shape \(found), expected \(expected)"
        }
    }
}
