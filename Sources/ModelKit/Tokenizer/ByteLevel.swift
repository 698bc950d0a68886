/// GPT-2's reversible byte ↔ character map: printable bytes stand for themselves, the rest
/// (controls, space, some Latin-1) map to U+0100 onwards, so every byte string is a string of
/// visible characters (bytes_to_unicode in OpenAI's encoder.py).
enum ByteLevel {
    static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable {
                table[b] = Unicode.Scalar(UInt32(b))!
            } else {
                table[b] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The UTF-8 encoding of the mapped characters of `bytes`.
    static func encode(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            let s = byteToScalar[Int(b)].value
            if s < 0x80 { out.append(UInt8(s)) } else { out += [UInt8(0xC0 | (s >> 6)), UInt8(0x80 | (s & 0x3F))] }
        }
        return out
    }

    /// The bytes a byte-level token text stands for (nil if it contains an unmapped character).
    static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        for scalar in text.unicodeScalars {
            guard let b = scalarToByte[scalar.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
