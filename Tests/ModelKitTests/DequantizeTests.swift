import Foundation
import Testing
@testable import ModelKit

/// Dequantization against values computed by llama.cpp's `gguf` Python package
/// (scripts/make-dequant-fixtures.py), for random blocks of every supported type.
@Suite struct DequantizeTests {
    struct Fixture: Decodable {
        let hex: String
        let values: [Float]
    }

    static let fixtures: [String: Fixture] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/dequant.json")
        guard let data = try? Data(contentsOf: url) else { return [:] }
        return (try? JSONDecoder().decode([String: Fixture].self, from: data)) ?? [:]
    }()

    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex {
            let j = hex.index(i, offsetBy: 2)
            out.append(UInt8(hex[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    @Test(arguments: GGMLType.allCases.filter { $0 != .f32 })
    func matchesReference(type: GGMLType) throws {
        let fixture = try #require(Self.fixtures[type.name], "no fixture for \(type.name)")
        let raw = Self.bytes(fixture.hex)
        #expect(raw.count == fixture.values.count / type.blockSize * type.blockBytes)
        var out = [Float](repeating: .nan, count: fixture.values.count)
        raw.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { Dequantize.run(type, src.baseAddress!, $0.baseAddress!, count: fixture.values.count) }
        }
        for (i, (got, want)) in zip(out, fixture.values).enumerated() {
            #expect(abs(got - want) <= 1e-6 * max(1, abs(want)), "\(type.name)[\(i)]: \(got) vs \(want)")
        }
    }

    /// A hand-computed Q8_0 block: d = 0.5 (f16 0x3800), q = −16…15 → y = q/2.
    @Test func q8_0ByHand() {
        var block: [UInt8] = [0x00, 0x38]
        block += (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }
        var out = [Float](repeating: 0, count: 32)
        block.withUnsafeBytes { src in out.withUnsafeMutableBufferPointer { Dequantize.run(.q8_0, src.baseAddress!, $0.baseAddress!, count: 32) } }
        #expect(out == (0..<32).map { Float($0 - 16) / 2 })
    }

    /// A hand-computed Q4_0 block: d = 2 (f16 0x4000), byte j = (hi << 4) | lo.
    @Test func q4_0ByHand() {
        var block: [UInt8] = [0x00, 0x40]
        for j in 0..<16 {
            let low = UInt8(j), high = UInt8(15 - j)
            block.append(low | (high << 4))
        }
        var out = [Float](repeating: 0, count: 32)
        block.withUnsafeBytes { src in out.withUnsafeMutableBufferPointer { Dequantize.run(.q4_0, src.baseAddress!, $0.baseAddress!, count: 32) } }
        let lows: [Float] = (0..<16).map { Float($0 - 8) * 2 }
        let highs: [Float] = (0..<16).map { Float(7 - $0) * 2 }
        let expected = lows + highs
        #expect(out == expected)
    }
}
