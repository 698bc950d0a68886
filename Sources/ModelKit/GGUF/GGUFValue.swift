/// GGUF metadata value types (gguf.md in the llama.cpp repository).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7, string = 8
    case array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Bytes of one value on disk (strings and arrays: their smallest possible encoding).
    var minimumSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}

/// A metadata value. Arrays keep their element type (arrays may nest).
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64, GGUFValueType)
    case int(Int64, GGUFValueType)
    case float(Double, GGUFValueType)
    case bool(Bool)
    case string(String)
    case array(GGUFValueType, [GGUFValue])

    public var intValue: Int? {
        switch self {
        case .uint(let v, _): return v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v, _): return Int(v)
        default: return nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .float(let v, _): return v
        case .uint(let v, _): return Double(v)
        case .int(let v, _): return Double(v)
        default: return nil
        }
    }

    public var boolValue: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }

    public var stringValue: String? {
        if case .string(let v) = self { return v }
        return nil
    }

    public var arrayValue: [GGUFValue]? {
        if case .array(_, let v) = self { return v }
        return nil
    }
}
