import CQuant
import Foundation
import TensorKit

/// How scoring multiplies Float32 activations with the weights: exact Float32 products
/// (`float32`, the default), or both rounded to bfloat16 with Float32 sums (`bfloat16`: 1.4–1.6×
/// as fast on CPUs with AVX512-BF16, gold labels moved by a median 0.04 logit; docs/judge.md).
/// Where the CPU lacks AVX512-BF16, `bfloat16` runs the Float32 products.
public enum ScoringPrecision: String, Sendable, CaseIterable {
    case float32
    case bfloat16

    /// Whether this CPU runs `bfloat16` products (AVX512-BF16).
    public static let bfloat16Supported = pq_bf16_supported() != 0
}

/// How a loaded model keeps its linear weights.
public enum WeightStorage: Sendable {
    /// In the GGUF file's block formats, read from the memory-mapped file (no Float32 copy).
    case quantized
    /// Dequantized to Float32 at load.
    case float32
}

/// A linear layer's weight matrix, (rows = outputs, columns = inputs) row-major as llama.cpp and
/// PyTorch store it, kept either in its GGUF block format or as Float32.
///
/// `apply` computes `Y = X · Wᵀ` (docs/performance.md § 8-bit activations on every path):
/// - by default (`int8Activations`) each activation row is rounded to 8 bits per block, as
///   llama.cpp does, and one integer kernel serves every batch size (several activation rows
///   per unpacked weight block, weight rows split across the cores), so a row's result is
///   bit-identical however many rows share the call; Q8_0, Q5_0 and Q4_0 matrices are repacked
///   on first use into 8 interleaved rows (CQuant's X8 layout), and the file's pages released;
/// - with Float32 activations, fewer than `gemmThreshold` rows meet weights unpacked in
///   registers, more take dequantized tiles and the OpenBLAS GEMM; the two agree up to
///   summation order.
/// F16 and BF16 weights always take the Float32 paths.
public final class WeightMatrix: @unchecked Sendable {
    /// Consecutive rows stored in one GGML type (stacked Q|K|V may mix types).
    struct Segment {
        let type: GGMLType
        let base: UnsafeRawPointer
        let firstRow: Int
        let rows: Int
        let rowBytes: Int
    }

    public let rows: Int
    public let columns: Int
    let segments: [Segment]
    /// Keeps the memory mapping that `segments` point into alive.
    private let owner: AnyObject?
    private let releasesPages: Bool
    private var denseCopy: Tensor?
    /// Q8_0/Q5_0/Q4_0 segments repacked into CQuant's X8 layout (8 interleaved rows) on their
    /// first 8-bit product, by segment index; the original pages are then released.
    private var packed: [Int: UnsafeMutableRawPointer] = [:]
    private let lock = NSLock()          // guards denseCopy (held while `dense` decodes)
    private let packLock = NSLock()      // guards packed

    deinit { for p in packed.values { p.deallocate() } }

    /// Round activations to 8 bits per block and use integer dot products, as llama.cpp does (the
    /// default); `PRECEPT_ACTIVATIONS=f32` multiplies Float32 activations with the unpacked weights
    /// instead (docs/performance.md § 8-bit activations on every path).
    nonisolated(unsafe) public static var int8Activations = ProcessInfo.processInfo.environment["PRECEPT_ACTIVATIONS"] != "f32"

    /// Activation rows from which the Float32 path takes dequantized tiles and the GEMM (environment:
    /// `PRECEPT_GEMM_THRESHOLD`, for measuring the crossover; 48 measured on gemma-3-270m,
    /// docs/performance.md).
    nonisolated(unsafe) public static var gemmThreshold =
        ProcessInfo.processInfo.environment["PRECEPT_GEMM_THRESHOLD"].flatMap { Int($0) }.map { max(1, $0) } ?? 48

    /// Float32 elements of dequantized tiles on the GEMM path, all cores' together (environment:
    /// `PRECEPT_TILE_FLOATS`; 2 Mi measured on the 1.5B model's prefill, docs/performance.md).
    nonisolated(unsafe) public static var tileFloats =
        ProcessInfo.processInfo.environment["PRECEPT_TILE_FLOATS"].flatMap { Int($0) } ?? (1 << 21)

    /// A Float32 matrix (rows, columns).
    public init(dense: Tensor) {
        precondition(dense.shape.count == 2, "a weight matrix is 2-D, got \(dense.shape)")
        rows = dense.rows
        columns = dense.columns
        segments = []
        owner = nil
        releasesPages = false
        denseCopy = dense
    }

    /// `releasesPages`: the segments point into a read-only file mapping, whose pages of repacked
    /// segments may be dropped (never for caller-owned memory).
    init(columns: Int, segments: [Segment], owner: AnyObject, releasesPages: Bool = false) {
        self.columns = columns
        self.segments = segments
        self.owner = owner
        self.releasesPages = releasesPages
        rows = segments.reduce(0) { $0 + $1.rows }
    }

    /// Whether the weights are read in block format (false: Float32 in memory).
    public var isQuantized: Bool { !segments.isEmpty }

    /// The GGML types of the stored rows (Float32 for a dense matrix).
    public var types: [GGMLType] { segments.isEmpty ? [.f32] : segments.map(\.type) }

    /// The Float32 values, dequantized once on first use and kept (the training engine's frozen
    /// base multiplies with these).
    public var dense: Tensor {
        lock.lock()
        defer { lock.unlock() }
        if let denseCopy { return denseCopy }
        let out = Tensor(shape: [rows, columns], zeroed: false)
        decode(0..<rows, into: out.data)
        denseCopy = out
        return out
    }

    /// A Float32 copy that can be changed in place (a LoRA merge).
    public func denseCopyForUpdate() -> WeightMatrix { WeightMatrix(dense: dense.copy()) }

    /// Writes row `r` as Float32 into `destination` (an embedding lookup); from the Float32 copy
    /// when `dense` has made one.
    public func row(_ r: Int, into destination: UnsafeMutablePointer<Float>) {
        precondition(r >= 0 && r < rows, "row \(r) outside 0..<\(rows)")
        if let d = lockedDense() {
            destination.update(from: d.row(r), count: columns)
            return
        }
        decode(r..<r + 1, into: destination)
    }

    /// Rows `range` as Float32 (range.count, columns): a pointer into the Float32 matrix when it
    /// is dense, else dequantized (both cores) into `scratch`, which must hold that many rows.
    public func dequantizedRows(_ range: Range<Int>, scratch: Tensor?) -> UnsafePointer<Float> {
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        if segments.isEmpty, let d = lockedDense() { return UnsafePointer(d.row(range.lowerBound)) }
        guard let scratch, scratch.count >= range.count * columns else { preconditionFailure("dequantizedRows(_:scratch:) needs a scratch tile") }
        decode(range, into: scratch.data)
        return UnsafePointer(scratch.data)
    }

    private func lockedDense() -> Tensor? {
        lock.lock()
        defer { lock.unlock() }
        return denseCopy
    }

    /// Dequantizes rows `range` of the stored blocks into `out` (row stride `columns`), both cores;
    /// from the X8 copy of a segment that has one (its original pages were released).
    private func decode(_ range: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        for (index, s) in segments.enumerated() {
            let lower = max(range.lowerBound, s.firstRow), upper = min(range.upperBound, s.firstRow + s.rows)
            guard upper > lower else { continue }
            let x8 = lockedPacked(index)
            Parallel.chunks(upper - lower, minimum: 64) { part in
                let first = lower - s.firstRow + part.lowerBound
                let target = out + (lower - range.lowerBound + part.lowerBound) * columns
                if let x8 {
                    pq_dequantize_x8_rows(Int64(columns), x8, Int64(first), Int64(part.count), target)
                } else {
                    pq_dequantize_rows(Int32(s.type.rawValue), Int64(columns), s.base + first * s.rowBytes, Int64(s.rowBytes), Int64(part.count), target)
                }
            }
        }
    }

    private func lockedPacked(_ index: Int) -> UnsafeMutableRawPointer? {
        packLock.lock()
        defer { packLock.unlock() }
        return packed[index]
    }

    /// The X8 copy of segment `index` (a Q8_0, Q5_0 or Q4_0 segment), made on first use: every
    /// 8-bit product of these types runs on it (docs/performance.md § 8-bit activations on every path).
    private func packedSegment(_ index: Int) -> UnsafeMutableRawPointer {
        packLock.lock()
        defer { packLock.unlock() }
        if let p = packed[index] { return p }
        let s = segments[index]
        let p = UnsafeMutableRawPointer.allocate(byteCount: Int(pq_x8_bytes(Int64(s.rows), Int64(columns))), alignment: 64)
        // 1024 groups (8192 rows) at a time, each span's original pages released once repacked,
        // so the original and the copy are never both resident (peak RSS).
        let groups = (s.rows + 7) / 8
        for start in stride(from: 0, to: groups, by: 1024) {
            let span = min(1024, groups - start)
            Parallel.chunks(span, minimum: 64) { range in
                pq_repack_x8(Int32(s.type.rawValue), Int64(columns), s.base, Int64(s.rowBytes), Int64(s.rows),
                             Int64(start + range.lowerBound), Int64(range.count), p)
            }
            let firstRow = start * 8, lastRow = min(s.rows, (start + span) * 8)
            if releasesPages { pq_release_pages(s.base + firstRow * s.rowBytes, Int64((lastRow - firstRow) * s.rowBytes)) }
        }
        packed[index] = p
        return p
    }

    private static func interleaves(_ type: GGMLType) -> Bool { type == .q8_0 || type == .q5_0 || type == .q4_0 }

    /// `Y(m, outputs.count) = X(m, columns) · W[outputs]ᵀ`, with `Y`'s rows `ldy` apart.
    /// `int8` overrides `int8Activations` for this call; `precision` is how Float32 activations
    /// meet quantized weights (for every row count when it is `bfloat16` and the CPU has it).
    public func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                      outputs: Range<Int>? = nil, int8: Bool? = nil, precision: ScoringPrecision = .float32) {
        let int8 = int8 ?? Self.int8Activations
        let outputs = outputs ?? 0..<rows
        let ldy = ldy ?? outputs.count
        precondition(outputs.lowerBound >= 0 && outputs.upperBound <= rows && ldy >= outputs.count)
        guard m > 0, !outputs.isEmpty else { return }
        if segments.isEmpty, let d = lockedDense() {
            GEMM.strided(transposeA: false, transposeB: true, m: m, n: outputs.count, k: columns,
                         x, lda: columns, d.row(outputs.lowerBound), ldb: columns, beta: 0, y, ldc: ldy)
            return
        }
        let rowChunk = max(1, 32_768 / max(columns, 1))             // weight rows per core, at least ≈ 32 K weights
        var quantized: [GGMLType: UnsafeMutableRawPointer] = [:]   // activations, per activation format
        var packedBF16: UnsafeMutablePointer<UInt16>?              // activations as bfloat16 rows
        defer {
            for p in quantized.values { p.deallocate() }
            packedBF16?.deallocate()
        }
        for (index, s) in segments.enumerated() {
            let lower = max(outputs.lowerBound, s.firstRow), upper = min(outputs.upperBound, s.firstRow + s.rows)
            guard upper > lower else { continue }
            let weights = s.base + (lower - s.firstRow) * s.rowBytes
            let out = y + (lower - outputs.lowerBound)
            let count = upper - lower
            let type = Int32(s.type.rawValue)
            if s.type == .f32 {
                GEMM.strided(transposeA: false, transposeB: true, m: m, n: count, k: columns, x, lda: columns,
                             weights.assumingMemoryBound(to: Float.self), ldb: s.rowBytes / 4, beta: 0, out, ldc: ldy)
            } else if int8 && s.type != .f16 && s.type != .bf16 {
                // Every batch size takes the same integer kernel, so a row's result is bit-identical
                // however many rows share the call.
                let key = Self.activationFormat(s.type)
                let xq: UnsafeMutableRawPointer
                if let p = quantized[key] { xq = p } else {
                    let rowBytes = Int(pq_activation_row_bytes(type, Int64(columns)))
                    xq = UnsafeMutableRawPointer.allocate(byteCount: max(rowBytes * m, 1), alignment: 64)
                    Parallel.chunks(m, minimum: 16) { range in
                        pq_quantize_activations(type, x + range.lowerBound * columns, Int64(columns), Int64(range.count), Int64(columns),
                                                xq + range.lowerBound * rowBytes)
                    }
                    quantized[key] = xq
                }
                if Self.interleaves(s.type) {
                    // Groups of 8 interleaved rows, split across the cores.
                    let x8 = packedSegment(index), first = lower - s.firstRow
                    Self.groupParts(first..<first + count, minimumRows: rowChunk) { part in
                        pq_matmul_x8(type, Int64(columns), x8, Int64(part.lowerBound), Int64(part.count), xq, Int64(m),
                                     out + (part.lowerBound - first), Int64(ldy))
                    }
                } else {
                    // Few activation rows (decoding): weight rows in 4 pieces per core, claimed
                    // as the cores finish (each row's result is the same whatever the split).
                    Parallel.chunks(count, minimum: rowChunk, piecesPerCore: m <= 4 ? 4 : 1) { range in
                        pq_matmul(type, Int64(columns), weights + range.lowerBound * s.rowBytes, Int64(s.rowBytes), Int64(range.count),
                                  xq, Int64(m), out + range.lowerBound, Int64(ldy))
                    }
                }
            } else if precision == .bfloat16 && ScoringPrecision.bfloat16Supported {
                // Every row count takes the bfloat16 GEMM, so a row's result does not depend on
                // how many rows share the call (the kernel sums each row in one order).
                let xa: UnsafeMutablePointer<UInt16>
                if let p = packedBF16 { xa = p } else {
                    let kp = (columns + 1) & ~1
                    xa = .allocate(capacity: m * kp)
                    Parallel.chunks(m, minimum: 16) { range in
                        pq_bf16_pack_rows(x + range.lowerBound * columns, Int64(columns), Int64(range.count), Int64(columns),
                                          xa + range.lowerBound * kp)
                    }
                    packedBF16 = xa
                }
                tiledGEMM(lower - s.firstRow..<upper - s.firstRow, of: index, x: x, bf16: xa, m: m, out: out, ldy: ldy)
            } else if m < Self.gemmThreshold {
                if let x8 = lockedPacked(index) {
                    // Repacked by an earlier 8-bit product (its original pages released): the
                    // Float32-activation kernel on the X8 layout.
                    let first = lower - s.firstRow
                    Self.groupParts(first..<first + count, minimumRows: rowChunk) { part in
                        pq_matmul_x8_f32(Int64(columns), x8, Int64(part.lowerBound), Int64(part.count), x, Int64(columns), Int64(m),
                                         out + (part.lowerBound - first), Int64(ldy))
                    }
                } else {
                    Parallel.chunks(count, minimum: rowChunk) { range in
                        pq_matmul_f32(type, Int64(columns), weights + range.lowerBound * s.rowBytes, Int64(s.rowBytes),
                                      Int64(range.count), x, Int64(columns), Int64(m), out + range.lowerBound, Int64(ldy))
                    }
                }
            } else {
                tiledGEMM(lower - s.firstRow..<upper - s.firstRow, of: index, x: x, bf16: nil, m: m, out: out, ldy: ldy)
            }
        }
    }

    /// Activations quantized for one weight type serve every type of the same block family.
    private static func activationFormat(_ type: GGMLType) -> GGMLType {
        switch type {
        case .q4_K, .q5_K, .q6_K: .q4_K
        default: .q8_0
        }
    }

    /// Splits segment rows `rows` of an X8 matrix across the cores at multiples of 8 (a group of
    /// interleaved rows is never split), each part at least ≈ `minimumRows` rows.
    private static func groupParts(_ rows: Range<Int>, minimumRows: Int, _ body: (Range<Int>) -> Void) {
        let firstGroup = rows.lowerBound / 8, groups = (rows.upperBound + 7) / 8 - firstGroup
        Parallel.chunks(groups, minimum: max(1, minimumRows / 8)) { range in
            body(max(rows.lowerBound, (firstGroup + range.lowerBound) * 8)..<min(rows.upperBound, (firstGroup + range.upperBound) * 8))
        }
    }

    /// Each core takes its share of the rows, dequantizes a tile of them at a time (from the X8
    /// copy when there is one) and multiplies it with a single-threaded OpenBLAS call. Splitting by
    /// weight rows keeps both cores on their own tiles: no hand-off between our threads and
    /// OpenBLAS's per tile (measured, docs/performance.md). `rows` are segment `index`'s rows.
    /// With `bf16` (the activations packed by `pq_bf16_pack_rows`), each tile is packed to
    /// bfloat16 panels and multiplied by `pq_bf16_gemm` instead.
    private func tiledGEMM(_ rows: Range<Int>, of index: Int, x: UnsafePointer<Float>, bf16: UnsafePointer<UInt16>?, m: Int,
                           out: UnsafeMutablePointer<Float>, ldy: Int) {
        let s = segments[index], x8 = lockedPacked(index), count = rows.count
        let parts = Parallel.partCount(count, minimum: 64)
        // Tiles of about `tileFloats` Float32 in all, stay in L2/L3 while the GEMM streams the
        // activations past them.
        // (multiples of 8 rows: whole groups of an X8 copy).
        let tileRows = max(16, min((count + parts - 1) / parts, Self.tileFloats / parts / max(columns, 1)) / 8 * 8)
        let tiles = Tensor(shape: [parts * tileRows, columns], zeroed: false)
        let panelBytes = bf16 == nil ? 0 : Int(pq_bf16_panel_bytes(Int64(tileRows), Int64(columns)))
        let panels = bf16 == nil ? nil : UnsafeMutableRawPointer.allocate(byteCount: parts * panelBytes, alignment: 64)
        defer {
            withExtendedLifetime(tiles) {}
            panels?.deallocate()
        }
        // One part (a small segment): OpenBLAS keeps its threads for the product.
        let run = { (body: () -> Void) in parts > 1 ? GEMM.singleThreaded(body) : body() }
        run {
            Parallel.parts(count, minimum: 64) { part, range in
                let tile = tiles.row(part * tileRows)
                var start = range.lowerBound
                while start < range.upperBound {
                    let n = min(tileRows, range.upperBound - start), first = rows.lowerBound + start
                    if let x8 {
                        pq_dequantize_x8_rows(Int64(columns), x8, Int64(first), Int64(n), tile)
                    } else {
                        pq_dequantize_rows(Int32(s.type.rawValue), Int64(columns), s.base + first * s.rowBytes,
                                           Int64(s.rowBytes), Int64(n), tile)
                    }
                    if let bf16, let panels {
                        let panel = (panels + part * panelBytes).assumingMemoryBound(to: UInt16.self)
                        pq_bf16_pack_panels(tile, Int64(columns), Int64(n), Int64(columns), panel)
                        pq_bf16_gemm(Int64(m), Int64(n), Int64(columns), bf16, panel, out + start, Int64(ldy))
                    } else {
                        GEMM.strided(transposeA: false, transposeB: true, m: m, n: n, k: columns, x, lda: columns,
                                     tile, ldb: columns, beta: 0, out + start, ldc: ldy)
                    }
                    start += n
                }
            }
        }
    }
}
