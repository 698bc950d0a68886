import Foundation

/// Writes GGUF version 3 files: metadata in the given order, then tensor infos, then the
/// aligned tensor data. Used for tiny test models and for exporting merged weights.
public struct GGUFWriter {
    public struct Tensor {
        public var name: String
        /// GGML order: `dims[0]` is the row length.
        public var dims: [Int]
        public var type: GGMLType
        /// Encoded data, `elementCount / blockSize × blockBytes` bytes.
        public var data: Data

        public init(name: String, dims: [Int], type: GGMLType, data: Data) {
            self.name = name
            self.dims = dims
            self.type = type
            self.data = data
        }

        /// An F32 tensor from floats.
        public static func f32(_ name: String, dims: [Int], _ values: [Float]) -> Tensor {
            precondition(values.count == dims.reduce(1, *))
            return Tensor(name: name, dims: dims, type: .f32, data: values.withUnsafeBufferPointer { Data(buffer: $0) })
        }
    }

    public var metadata: [(String, GGUFValue)] = []
    public var tensors: [Tensor] = []
    public var alignment = 32

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) {
        metadata.removeAll { $0.0 == key }
        metadata.append((key, value))
    }

    /// The encoded file.
    public func encoded() -> Data {
        var out = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); out.append(contentsOf: Array(s.utf8)) }
        func type(of value: GGUFValue) -> GGUFValueType {
            switch value {
            case .uint(_, let t), .int(_, let t), .float(_, let t): return t
            case .bool: return .bool
            case .string: return .string
            case .array: return .array
            }
        }
        func payload(_ value: GGUFValue) {
            switch value {
            case .uint(let v, let t):
                switch t {
                case .uint8: out.append(UInt8(truncatingIfNeeded: v))
                case .uint16: withUnsafeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian) { out.append(contentsOf: $0) }
                case .uint32: u32(UInt32(truncatingIfNeeded: v))
                default: u64(v)
                }
            case .int(let v, let t):
                switch t {
                case .int8: out.append(UInt8(bitPattern: Int8(truncatingIfNeeded: v)))
                case .int16: withUnsafeBytes(of: Int16(truncatingIfNeeded: v).littleEndian) { out.append(contentsOf: $0) }
                case .int32: u32(UInt32(bitPattern: Int32(truncatingIfNeeded: v)))
                default: u64(UInt64(bitPattern: v))
                }
            case .float(let v, let t):
                if t == .float64 { u64(v.bitPattern) } else { u32(Float(v).bitPattern) }
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): string(s)
            case .array(let elementType, let items):
                u32(elementType.rawValue)
                u64(UInt64(items.count))
                for item in items { payload(item) }
            }
        }

        u32(0x4655_4747)  // "GGUF"
        u32(3)
        u64(UInt64(tensors.count))
        var entries = metadata
        if alignment != 32, !entries.contains(where: { $0.0 == "general.alignment" }) {
            entries.append(("general.alignment", .uint(UInt64(alignment), .uint32)))
        }
        u64(UInt64(entries.count))
        for (key, value) in entries {
            string(key)
            u32(type(of: value).rawValue)
            payload(value)
        }
        var offset = 0
        var offsets: [Int] = []
        for tensor in tensors {
            offsets.append(offset)
            offset += (tensor.data.count + alignment - 1) / alignment * alignment
        }
        for (tensor, tensorOffset) in zip(tensors, offsets) {
            string(tensor.name)
            u32(UInt32(tensor.dims.count))
            for d in tensor.dims { u64(UInt64(d)) }
            u32(tensor.type.rawValue)
            u64(UInt64(tensorOffset))
        }
        func pad() { while out.count % alignment != 0 { out.append(0) } }
        pad()
        for tensor in tensors {
            out.append(tensor.data)
            pad()
        }
        return out
    }
}
