import Foundation

/// Decoding of GGML block formats to Float32, block by block as ggml-quants.c lays them out.
/// Every function reads `blocks` blocks from `src` and writes `blocks × blockSize` floats.
public enum Dequantize {
    /// Dequantizes `count` elements of `type` from `src` into `dst`.
    public static func run(_ type: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % type.blockSize == 0)
        let blocks = count / type.blockSize
        switch type {
        case .f32: dst.update(from: src.assumingMemoryBound(to: Float.self), count: count)
        case .f16: for i in 0..<count { dst[i] = half(src, i * 2) }
        case .bf16:
            for i in 0..<count { dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16) }
        case .q8_0: q8_0(src, dst, blocks)
        case .q4_0: q4(src, dst, blocks, hasMin: false)
        case .q4_1: q4(src, dst, blocks, hasMin: true)
        case .q5_0: q5(src, dst, blocks, hasMin: false)
        case .q5_1: q5(src, dst, blocks, hasMin: true)
        case .q4_K: q4_K(src, dst, blocks)
        case .q5_K: q5_K(src, dst, blocks)
        case .q6_K: q6_K(src, dst, blocks)
        }
    }

    /// Dequantizes a whole tensor into `dst` (elementCount floats), splitting large ones across
    /// threads by rows.
    public static func tensor(_ info: GGUFTensorInfo, from file: GGUFFile, into dst: UnsafeMutablePointer<Float>) {
        let data = file.data(of: info)
        let rows = info.rows, columns = info.columns
        let rowBytes = columns / info.type.blockSize * info.type.blockBytes
        let chunks = rows >= 64 ? min(16, rows / 32) : 1
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            let start = rows * chunk / chunks, end = rows * (chunk + 1) / chunks
            guard end > start else { return }
            run(info.type, data.baseAddress! + start * rowBytes, dst + start * columns, count: (end - start) * columns)
        }
    }

    /// Dequantizes a whole tensor into a new array.
    public static func tensor(_ info: GGUFTensorInfo, from file: GGUFFile) -> [Float] {
        [Float](unsafeUninitializedCapacity: info.elementCount) { buffer, initialized in
            tensor(info, from: file, into: buffer.baseAddress!)
            initialized = info.elementCount
        }
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    // Q8_0: { f16 d; int8 qs[32] } → y = d·q
    static func q8_0(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * 34
            let d = half(block, 0)
            let qs = (block + 2).assumingMemoryBound(to: Int8.self)
            let y = dst + b * 32
            for j in 0..<32 { y[j] = d * Float(qs[j]) }
        }
    }

    // Q4_0: { f16 d; u8 qs[16] } → low nibbles are elements 0…15, high nibbles 16…31; y = d·(q − 8)
    // Q4_1: { f16 d; f16 m; u8 qs[16] } → y = d·q + m
    static func q4(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int, hasMin: Bool) {
        let size = hasMin ? 20 : 18
        let header = hasMin ? 4 : 2
        for b in 0..<blocks {
            let block = src + b * size
            let d = half(block, 0)
            let m = hasMin ? half(block, 2) : -8 * d
            let qs = (block + header).assumingMemoryBound(to: UInt8.self)
            let y = dst + b * 32
            for j in 0..<16 {
                y[j] = Float(qs[j] & 0x0F) * d + m
                y[j + 16] = Float(qs[j] >> 4) * d + m
            }
        }
    }

    // Q5_0: { f16 d; u8 qh[4]; u8 qs[16] } → 5-bit q = nibble | (bit j of qh) << 4; y = d·(q − 16)
    // Q5_1: { f16 d; f16 m; u8 qh[4]; u8 qs[16] } → y = d·q + m
    static func q5(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int, hasMin: Bool) {
        let size = hasMin ? 24 : 22
        let header = hasMin ? 4 : 2
        for b in 0..<blocks {
            let block = src + b * size
            let d = half(block, 0)
            let m = hasMin ? half(block, 2) : -16 * d
            let qh = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: header, as: UInt32.self))
            let qs = (block + header + 4).assumingMemoryBound(to: UInt8.self)
            let y = dst + b * 32
            for j in 0..<16 {
                let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
                let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
                y[j] = Float((qs[j] & 0x0F) | h0) * d + m
                y[j + 16] = Float((qs[j] >> 4) | h1) * d + m
            }
        }
    }

    /// The 6-bit scale and min of sub-block `j` packed in 12 bytes (ggml's get_scale_min_k4).
    @inline(__always)
    static func scaleMin(_ j: Int, _ q: UnsafePointer<UInt8>) -> (Float, Float) {
        if j < 4 { return (Float(q[j] & 63), Float(q[j + 4] & 63)) }
        let scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4)
        let min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
        return (Float(scale), Float(min))
    }

    // Q4_K: { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }: 8 sub-blocks of 32 with 6-bit scales and mins;
    // each 64-element chunk takes the low then the high nibbles of 32 bytes. y = d·sc·q − dmin·m
    static func q4_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * 144
            let d = half(block, 0), dmin = half(block, 2)
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            var q = (block + 16).assumingMemoryBound(to: UInt8.self)
            var y = dst + b * 256
            for chunk in 0..<4 {
                let (sc1, m1) = scaleMin(2 * chunk, scales)
                let (sc2, m2) = scaleMin(2 * chunk + 1, scales)
                let d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2
                for l in 0..<32 { y[l] = d1 * Float(q[l] & 0x0F) - mm1 }
                for l in 0..<32 { y[32 + l] = d2 * Float(q[l] >> 4) - mm2 }
                q += 32
                y += 64
            }
        }
    }

    // Q5_K: { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K plus a fifth bit per element
    // from qh (bit 2·chunk for the low half, 2·chunk+1 for the high half).
    static func q5_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * 176
            let d = half(block, 0), dmin = half(block, 2)
            let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
            let qh = (block + 16).assumingMemoryBound(to: UInt8.self)
            var ql = (block + 48).assumingMemoryBound(to: UInt8.self)
            var y = dst + b * 256
            var u1: UInt8 = 1, u2: UInt8 = 2
            for chunk in 0..<4 {
                let (sc1, m1) = scaleMin(2 * chunk, scales)
                let (sc2, m2) = scaleMin(2 * chunk + 1, scales)
                let d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2
                for l in 0..<32 { y[l] = d1 * Float((ql[l] & 0x0F) + (qh[l] & u1 != 0 ? 16 : 0)) - mm1 }
                for l in 0..<32 { y[32 + l] = d2 * Float((ql[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - mm2 }
                ql += 32
                y += 64
                u1 <<= 2
                u2 <<= 2
            }
        }
    }

    // Q6_K: { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: 6-bit q = 4 low bits from ql, 2 high bits
    // from qh; 16 sub-blocks of 16 with int8 scales. y = d·sc·(q − 32)
    static func q6_K(_ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, _ blocks: Int) {
        for b in 0..<blocks {
            let block = src + b * 210
            var ql = block.assumingMemoryBound(to: UInt8.self)
            var qh = (block + 128).assumingMemoryBound(to: UInt8.self)
            var sc = (block + 192).assumingMemoryBound(to: Int8.self)
            let d = half(block, 208)
            var y = dst + b * 256
            for _ in 0..<2 {
                for l in 0..<32 {
                    let s = l / 16
                    let q1 = Int((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) - 32
                    let q2 = Int((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32
                    let q3 = Int((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32
                    let q4 = Int((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32
                    y[l] = d * Float(sc[s]) * Float(q1)
                    y[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                    y[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                    y[l + 96] = d * Float(sc[s + 6]) * Float(q4)
                }
                y += 128
                ql += 64
                qh += 32
                sc += 8
            }
        }
    }
}
