import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// GGML tensor types this engine reads, with their block geometry (ggml.c's type traits).
public enum GGMLType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8
    case q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    /// Elements per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: return 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: return 32
        case .q4_K, .q5_K, .q6_K: return 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: return 4
        case .f16, .bf16: return 2
        case .q4_0: return 18     // f16 d + 16 bytes of nibbles
        case .q4_1: return 20     // f16 d, f16 m + 16
        case .q5_0: return 22     // f16 d + 4 bytes high bits + 16
        case .q5_1: return 24     // f16 d, f16 m + 4 + 16
        case .q8_0: return 34     // f16 d + 32 int8
        case .q4_K: return 144    // f16 d, f16 dmin, 12 scale bytes, 128 nibble bytes
        case .q5_K: return 176    // as q4_K plus 32 bytes of high bits
        case .q6_K: return 210    // 128 low nibbles, 64 high 2-bits, 16 int8 scales, f16 d
        }
    }

    /// The name ggml and llama.cpp print (`Q4_K`, `F16`): the case name in capitals.
    public var name: String { String(describing: self).uppercased() }
}

/// A tensor's description from the file header.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// GGML dimension order: `dims[0]` is the contiguous (row) length.
    public let dims: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the tensor data in the file.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { dims.reduce(1, *) }
    /// Rows × columns for a matrix (`dims[1]` rows of `dims[0]`), the layout GEMM expects.
    public var rows: Int { elementCount / max(dims.first ?? 1, 1) }
    public var columns: Int { dims.first ?? 1 }
}

/// A memory-mapped GGUF file (versions 2 and 3). Every read is bounds-checked; counts read
/// from the file are checked against the bytes left before anything is allocated for them.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let fileSize: Int
    private let tensorIndex: [String: Int]
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let ownsMapping: Bool
    /// Whether the tensor bytes are this object's own read-only memory mapping of the file (so
    /// their pages can be dropped and paged in again), rather than caller-owned bytes.
    public var isMapped: Bool { ownsMapping }

    /// Maps and parses the file at `path`.
    public convenience init(path: String) throws {
        // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        let kind = FileKind.kind(mode: st.st_mode)
        guard kind == .regular else { throw GGUFError.cannotOpen(path: path, reason: "it is \(kind.phrase), not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else { throw GGUFError.truncated(path: path, offset: 0, expected: "the 4-byte magic") }
        guard let pointer = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), pointer != MAP_FAILED else {
            throw GGUFError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        do {
            try self.init(path: path, base: UnsafeRawPointer(pointer), size: size, ownsMapping: true)
        } catch {
            munmap(pointer, size)
            throw error
        }
    }

    /// Parses bytes already in memory (tests, fuzzing). The buffer must outlive the file object.
    public convenience init(path: String, bytes: UnsafeRawBufferPointer) throws {
        try self.init(path: path, base: bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, size: bytes.count,
                      ownsMapping: false)
    }

    private init(path: String, base: UnsafeRawPointer, size: Int, ownsMapping: Bool) throws {
        self.path = path
        self.base = base
        self.mappedLength = size
        self.ownsMapping = ownsMapping
        self.fileSize = size
        var r = Cursor(base: base, size: size, path: path)

        let magic = try r.u32("the 4-byte magic")
        guard magic == 0x4655_4747 else { throw GGUFError.badMagic(path: path, found: magic) }
        let version = try r.u32("the version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(path: path, version: version) }
        self.version = version
        let tensorCountOffset = r.offset
        let tensorCount = try r.u64("the tensor count")
        let kvCountOffset = r.offset
        let kvCount = try r.u64("the metadata count")
        // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes; each tensor info 8 + 4 + 4 + 8.
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw GGUFError.invalid(path: path, offset: kvCountOffset, message: "metadata count \(kvCount) exceeds what the file can hold")
        }
        guard tensorCount <= UInt64(r.remaining / 24) else {
            throw GGUFError.invalid(path: path, offset: tensorCountOffset, message: "tensor count \(tensorCount) exceeds what the file can hold")
        }

        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        for _ in 0..<Int(kvCount) {
            let keyOffset = r.offset
            let key = try r.string("a metadata key")
            let typeOffset = r.offset
            let rawType = try r.u32("the type of \(key)")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw GGUFError.invalid(path: path, offset: typeOffset, message: "metadata \(key) has unknown value type \(rawType)")
            }
            if metadata[key] != nil {
                throw GGUFError.invalid(path: path, offset: keyOffset, message: "duplicate metadata key \(key)")
            }
            metadata[key] = try r.value(type, key: key, depth: 0)
            keys.append(key)
        }
        self.metadata = metadata
        self.metadataKeys = keys

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue, a > 0, a <= 1 << 20, a & (a - 1) == 0 else {
                throw GGUFError.invalid(path: path, offset: 0, message: "general.alignment must be a power of two")
            }
            alignment = a
        }
        self.alignment = alignment

        struct RawInfo { let name: String; let dims: [Int]; let type: GGMLType; let relative: UInt64; let at: Int }
        var raw: [RawInfo] = []
        raw.reserveCapacity(Int(tensorCount))
        for _ in 0..<Int(tensorCount) {
            let at = r.offset
            let name = try r.string("a tensor name")
            let nDims = try r.u32("the dimension count of \(name)")
            guard (1...4).contains(nDims) else {
                throw GGUFError.invalid(path: path, offset: at, message: "tensor \(name) has \(nDims) dimensions (1 to 4 allowed)")
            }
            var dims: [Int] = []
            var elements: UInt64 = 1
            for _ in 0..<Int(nDims) {
                let d = try r.u64("a dimension of \(name)")
                guard d > 0, d < 1 << 40 else {
                    throw GGUFError.invalid(path: path, offset: r.offset - 8, message: "tensor \(name) has dimension \(d)")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow, product < 1 << 42 else {
                    throw GGUFError.invalid(path: path, offset: r.offset - 8, message: "tensor \(name) is too large")
                }
                elements = product
                dims.append(Int(d))
            }
            let typeValue = try r.u32("the type of \(name)")
            guard let type = GGMLType(rawValue: typeValue) else {
                throw GGUFError.unknownTensorType(path: path, tensor: name, type: typeValue)
            }
            guard dims[0] % type.blockSize == 0 else {
                throw GGUFError.invalid(path: path, offset: at, message: "tensor \(name): row length \(dims[0]) is not a multiple of the \(type) block size \(type.blockSize)")
            }
            let relative = try r.u64("the data offset of \(name)")
            raw.append(RawInfo(name: name, dims: dims, type: type, relative: relative, at: at))
        }

        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        var infos: [GGUFTensorInfo] = []
        var index: [String: Int] = [:]
        for info in raw {
            guard info.relative % UInt64(alignment) == 0 else {
                throw GGUFError.invalid(path: path, offset: info.at, message: "tensor \(info.name): data offset \(info.relative) is not aligned to \(alignment)")
            }
            let elements = info.dims.reduce(1, *)
            let bytes = elements / info.type.blockSize * info.type.blockBytes
            guard info.relative <= UInt64(size), dataStart + Int(info.relative) + bytes <= size else {
                throw GGUFError.truncated(path: path, offset: dataStart + Int(min(info.relative, UInt64(size))),
                                          expected: "the \(bytes) bytes of tensor \(info.name)")
            }
            if index[info.name] != nil {
                throw GGUFError.invalid(path: path, offset: info.at, message: "duplicate tensor name \(info.name)")
            }
            index[info.name] = infos.count
            infos.append(GGUFTensorInfo(name: info.name, dims: info.dims, type: info.type,
                                        offset: dataStart + Int(info.relative), byteCount: bytes))
        }
        self.tensors = infos
        self.tensorIndex = index
    }

    deinit {
        if ownsMapping { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The raw bytes of a tensor (valid while the file object lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + tensor.offset, count: tensor.byteCount)
    }

    // MARK: Typed metadata access

    public func string(_ key: String) throws -> String {
        guard let value = metadata[key] else { throw GGUFError.missingKey(path: path, key: key) }
        guard let s = value.stringValue else { throw GGUFError.wrongKeyType(path: path, key: key, expected: "a string") }
        return s
    }

    public func int(_ key: String) throws -> Int {
        guard let value = metadata[key] else { throw GGUFError.missingKey(path: path, key: key) }
        guard let v = value.intValue else { throw GGUFError.wrongKeyType(path: path, key: key, expected: "an integer") }
        return v
    }

    public func double(_ key: String) throws -> Double {
        guard let value = metadata[key] else { throw GGUFError.missingKey(path: path, key: key) }
        guard let v = value.doubleValue else { throw GGUFError.wrongKeyType(path: path, key: key, expected: "a number") }
        return v
    }

    public func optionalInt(_ key: String) throws -> Int? { metadata[key] == nil ? nil : try int(key) }
    public func optionalDouble(_ key: String) throws -> Double? { metadata[key] == nil ? nil : try double(key) }
    public func optionalBool(_ key: String) -> Bool? { metadata[key]?.boolValue }
}

/// Bounds-checked little-endian reads from the mapped file.
private struct Cursor {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset = 0

    init(base: UnsafeRawPointer, size: Int, path: String) {
        self.base = base
        self.size = size
        self.path = path
    }

    var remaining: Int { size - offset }

    mutating func take(_ count: Int, _ what: @autoclosure () -> String) throws -> UnsafeRawPointer {
        guard count >= 0, count <= remaining else { throw GGUFError.truncated(path: path, offset: offset, expected: what()) }
        defer { offset += count }
        return base + offset
    }

    mutating func u32(_ what: @autoclosure () -> String) throws -> UInt32 {
        UInt32(littleEndian: try take(4, what()).loadUnaligned(as: UInt32.self))
    }

    mutating func u64(_ what: @autoclosure () -> String) throws -> UInt64 {
        UInt64(littleEndian: try take(8, what()).loadUnaligned(as: UInt64.self))
    }

    mutating func string(_ what: @autoclosure () -> String) throws -> String {
        let at = offset
        let length = try u64("the length of \(what())")
        guard length <= UInt64(remaining) else {
            throw GGUFError.truncated(path: path, offset: at, expected: "a \(length)-byte string (\(what()))")
        }
        let pointer = try take(Int(length), what())
        return String(decoding: UnsafeRawBufferPointer(start: pointer, count: Int(length)), as: UTF8.self)
    }

    mutating func value(_ type: GGUFValueType, key: String, depth: Int) throws -> GGUFValue {
        let what = "the value of \(key)"
        switch type {
        case .uint8: return .uint(UInt64(try take(1, what).load(as: UInt8.self)), type)
        case .int8: return .int(Int64(try take(1, what).load(as: Int8.self)), type)
        case .uint16: return .uint(UInt64(UInt16(littleEndian: try take(2, what).loadUnaligned(as: UInt16.self))), type)
        case .int16: return .int(Int64(Int16(littleEndian: try take(2, what).loadUnaligned(as: Int16.self))), type)
        case .uint32: return .uint(UInt64(try u32(what)), type)
        case .int32: return .int(Int64(Int32(bitPattern: try u32(what))), type)
        case .uint64: return .uint(try u64(what), type)
        case .int64: return .int(Int64(bitPattern: try u64(what)), type)
        case .float32: return .float(Double(Float(bitPattern: try u32(what))), type)
        case .float64: return .float(Double(bitPattern: try u64(what)), type)
        case .bool:
            let at = offset
            let b = try take(1, what).load(as: UInt8.self)
            guard b <= 1 else { throw GGUFError.invalid(path: path, offset: at, message: "\(key): boolean byte \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string(what))
        case .array:
            let at = offset
            guard depth < 8 else { throw GGUFError.invalid(path: path, offset: at, message: "\(key): arrays nested too deeply") }
            let rawType = try u32("the element type of \(key)")
            guard let elementType = GGUFValueType(rawValue: rawType) else {
                throw GGUFError.invalid(path: path, offset: at, message: "\(key): unknown array element type \(rawType)")
            }
            let count = try u64("the element count of \(key)")
            guard count <= UInt64(remaining / elementType.minimumSize) else {
                throw GGUFError.truncated(path: path, offset: at, expected: "\(count) array elements of \(key)")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) { items.append(try value(elementType, key: key, depth: depth + 1)) }
            return .array(elementType, items)
        }
    }
}
