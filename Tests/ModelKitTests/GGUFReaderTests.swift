import Foundation
import Testing
@testable import ModelKit

/// The GGUF reader on files written by `GGUFWriter`, on hostile variants of them, and on the
/// real default model when it is in the cache.
@Suite struct GGUFReaderTests {
    static func sampleFile(alignment: Int = 32) -> Data {
        var w = GGUFWriter()
        w.alignment = alignment
        w.set("general.architecture", .string("llama"))
        w.set("test.u8", .uint(200, .uint8))
        w.set("test.i16", .int(-1234, .int16))
        w.set("test.u64", .uint(1 << 40, .uint64))
        w.set("test.f64", .float(0.125, .float64))
        w.set("test.flag", .bool(true))
        w.set("test.strings", .array(.string, [.string("a"), .string("βγ"), .string("")]))
        w.set("test.nested", .array(.array, [.array(.int32, [.int(1, .int32), .int(-2, .int32)]), .array(.int32, [])]))
        w.tensors.append(.f32("a", dims: [4, 2], [1, 2, 3, 4, 5, 6, 7, 8]))
        var q8 = Data([0x00, 0x3C])  // d = 1.0
        q8.append(contentsOf: (0..<32).map { UInt8(bitPattern: Int8($0 - 5)) })
        w.tensors.append(GGUFWriter.Tensor(name: "b", dims: [32], type: .q8_0, data: q8))
        return w.encoded()
    }

    static func parse(_ data: Data) throws -> GGUFFile {
        // The bytes are copied into a buffer that lives as long as the process for these small files.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(data.count, 1), alignment: 64)
        _ = data.copyBytes(to: buffer.bindMemory(to: UInt8.self))
        return try GGUFFile(path: "test.gguf", bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<data.count]))
    }

    @Test(arguments: [32, 64])
    func roundTripsMetadataAndTensors(alignment: Int) throws {
        let file = try Self.parse(Self.sampleFile(alignment: alignment))
        #expect(file.version == 3 && file.alignment == alignment)
        #expect(try file.string("general.architecture") == "llama")
        #expect(file.metadata["test.u8"] == .uint(200, .uint8))
        #expect(file.metadata["test.i16"] == .int(-1234, .int16))
        #expect(try file.int("test.u64") == 1 << 40)
        #expect(try file.double("test.f64") == 0.125)
        #expect(file.optionalBool("test.flag") == true)
        #expect(file.metadata["test.strings"]?.arrayValue?.compactMap(\.stringValue) == ["a", "βγ", ""])
        #expect(file.metadata["test.nested"]?.arrayValue?.first?.arrayValue?.compactMap(\.intValue) == [1, -2])
        let a = try #require(file.tensor(named: "a"))
        #expect(a.dims == [4, 2] && a.rows == 2 && a.columns == 4 && a.offset % alignment == 0)
        #expect(Dequantize.tensor(a, from: file) == [1, 2, 3, 4, 5, 6, 7, 8])
        let b = try #require(file.tensor(named: "b"))
        #expect(Dequantize.tensor(b, from: file) == (0..<32).map { Float($0 - 5) })
    }

    /// Version 2 has the same layout as 3 (64-bit counts); both are read.
    @Test func readsVersion2() throws {
        var data = Self.sampleFile()
        data[4] = 2
        let file = try Self.parse(data)
        #expect(file.version == 2 && file.tensors.count == 2)
    }

    @Test func rejectsBadMagicAndVersion() throws {
        var data = Self.sampleFile()
        data[0] = 0x00
        #expect(throws: GGUFError.self) { try Self.parse(data) }
        data = Self.sampleFile()
        data[4] = 9
        #expect { try Self.parse(data) } throws: { ($0 as? GGUFError) == .unsupportedVersion(path: "test.gguf", version: 9) }
    }

    @Test func hostileCountsFailBeforeAllocating() throws {
        var data = Self.sampleFile()
        // Tensor count (offset 8) set to 2^60: must be rejected by size, not by trying to allocate.
        data.replaceSubrange(8..<16, with: withUnsafeBytes(of: (UInt64(1) << 60).littleEndian) { Data($0) })
        #expect { try Self.parse(data) } throws: { error in
            (error as? GGUFError)?.errorDescription?.contains("byte offset 8: tensor count") == true
        }
    }

    /// Every prefix that cuts into the header or a tensor's data is an error, never a crash;
    /// prefixes that drop only the trailing alignment padding are complete files.
    @Test func everyTruncationIsAnError() throws {
        let data = Self.sampleFile()
        let full = try Self.parse(data)
        let dataEnd = full.tensors.map { $0.offset + $0.byteCount }.max()!
        for length in 0..<data.count {
            if length < dataEnd {
                #expect(throws: GGUFError.self, "prefix of \(length) bytes parsed") { try Self.parse(data.prefix(length)) }
            } else {
                #expect(try Self.parse(data.prefix(length)).tensors.count == 2)
            }
        }
    }

    /// Random bit flips either parse (flips in tensor data) or throw; the process never traps.
    @Test func bitFlipsNeverCrash() throws {
        let data = Self.sampleFile()
        var rng = SystemRandomNumberGenerator()
        var errors = 0
        for _ in 0..<3000 {
            var mutated = data
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Int.random(in: 0..<mutated.count, using: &rng)
                mutated[i] ^= UInt8(1) << UInt8.random(in: 0...7, using: &rng)
            }
            do {
                let file = try Self.parse(mutated)
                for t in file.tensors { _ = Dequantize.tensor(t, from: file) }
            } catch is GGUFError {
                errors += 1
            }
        }
        #expect(errors > 100)
    }
}
