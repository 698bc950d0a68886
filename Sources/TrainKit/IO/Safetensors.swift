import Foundation
import TensorKit

/// Errors reading a safetensors file; each names the file and, where it applies, the byte offset
/// or tensor.
public enum SafetensorsError: LocalizedError, Equatable {
    case cannotRead(path: String, reason: String)
    case malformed(path: String, offset: Int, reason: String)
    case missingTensor(path: String, name: String)
    case wrongShape(path: String, name: String, expected: [Int], found: [Int])

    public var errorDescription: String? {
        switch self {
        case .cannotRead(let path, let reason): "\(path): cannot read: \(reason)"
        case .malformed(let path, let offset, let reason): "\(path): byte \(offset): \(reason)"
        case .missingTensor(let path, let name): "\(path): no tensor named '\(name)'"
        case .wrongShape(let path, let name, let expected, let found):
            "\(path): tensor '\(name)' has shape \(found), expected \(expected)"
        }
    }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
/// mapping names to {dtype, shape, data_offsets} (plus optional "__metadata__" strings), then the
/// raw little-endian data. We write F32 and read F32, F16 and BF16.
public enum Safetensors {
    /// Encodes named F32 tensors (written in the order given) with string metadata.
    public static func encode(_ tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                              metadata: [String: String] = ["format": "pt"]) -> Data {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for t in tensors {
            precondition(t.shape.reduce(1, *) == t.values.count, "\(t.name): shape does not match its values")
            let bytes = t.values.count * 4
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        var json = try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }   // pad with spaces so data is 8-byte aligned
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { out.append(Data(buffer: t.values)) }
        return out
    }

    /// Writes named tensors to `url` atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = ["format": "pt"],
                             to url: URL) throws {
        let data = encode(tensors.map { ($0.name, $0.tensor.shape, UnsafeBufferPointer(start: $0.tensor.data, count: $0.tensor.count)) },
                          metadata: metadata)
        withExtendedLifetime(tensors) {}
        try data.write(to: url, options: .atomic)
    }

    /// A parsed file: every tensor as Float32.
    public struct File {
        public let path: String
        public let metadata: [String: String]
        public let tensors: [String: (shape: [Int], values: [Float])]

        /// Copies the named tensor into `into` after checking its shape.
        public func load(_ name: String, into tensor: Tensor) throws {
            guard let t = tensors[name] else { throw SafetensorsError.missingTensor(path: path, name: name) }
            guard t.shape == tensor.shape else {
                throw SafetensorsError.wrongShape(path: path, name: name, expected: tensor.shape, found: t.shape)
            }
            t.values.withUnsafeBufferPointer { tensor.data.update(from: $0.baseAddress!, count: tensor.count) }
        }
    }

    /// Reads and validates a file: every offset and shape is checked before use.
    public static func read(_ url: URL) throws -> File {
        let path = url.path
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw SafetensorsError.cannotRead(path: path, reason: error.localizedDescription) }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String) throws -> File {
        func fail(_ offset: Int, _ reason: String) -> SafetensorsError { .malformed(path: path, offset: offset, reason: reason) }
        let bytes = [UInt8](data)
        guard bytes.count >= 8 else { throw fail(0, "file is \(bytes.count) bytes, shorter than the 8-byte header length") }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard length <= UInt64(bytes.count - 8) else { throw fail(0, "header length \(length) runs past the end of the file (\(bytes.count) bytes)") }
        let headerEnd = 8 + Int(length)
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: Data(bytes[8..<headerEnd])) } catch {
            throw fail(8, "header is not valid JSON")
        }
        guard let header = any as? [String: Any] else { throw fail(8, "header is not a JSON object") }
        var metadata: [String: String] = [:]
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        let dataSize = bytes.count - headerEnd
        for (name, value) in header {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else { throw fail(8, "__metadata__ is not a map of strings") }
                metadata = m
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw fail(8, "tensor '\(name)' needs dtype, shape and two data_offsets")
            }
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16", "BF16": width = 2
            default: throw fail(8, "tensor '\(name)' has dtype \(dtype); only F32, F16 and BF16 are read")
            }
            guard shape.allSatisfy({ $0 >= 0 && $0 < 1 << 40 }) else { throw fail(8, "tensor '\(name)' has an invalid shape \(shape)") }
            let (count, overflow) = shape.reduce((1, false)) { acc, d in
                let (p, o) = acc.0.multipliedReportingOverflow(by: d)
                return (p, acc.1 || o)
            }
            guard !overflow, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataSize else {
                throw fail(8, "tensor '\(name)' data_offsets \(offsets) lie outside the \(dataSize) data bytes")
            }
            guard offsets[1] - offsets[0] == count * width else {
                throw fail(headerEnd + offsets[0], "tensor '\(name)' holds \(offsets[1] - offsets[0]) bytes; shape \(shape) of \(dtype) needs \(count * width)")
            }
            var values = [Float](repeating: 0, count: count)
            let start = headerEnd + offsets[0]
            for i in 0..<count {
                let p = start + i * width
                switch dtype {
                case "F32":
                    values[i] = Float(bitPattern: UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24)
                case "F16":
                    values[i] = Float(Float16(bitPattern: UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8))
                default:
                    values[i] = Float(bitPattern: (UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8) << 16)
                }
            }
            tensors[name] = (shape, values)
        }
        return File(path: path, metadata: metadata, tensors: tensors)
    }
}
