import Foundation
import ModelKit
import TensorKit

/// Writes a base GGUF with a LoRA adapter merged into its weights (W' = W + s·B·A), so llama.cpp
/// or Ollama can serve the result without the adapter. Metadata and every other tensor are copied
/// unchanged (same type and bytes); merged projections are written as F32, F16 or Q8_0.
public enum MergedModel {
    public enum Precision: String, Sendable, CaseIterable, Codable {
        case f32, f16, q8_0

        var type: GGMLType {
            switch self {
            case .f32: .f32
            case .f16: .f16
            case .q8_0: .q8_0
            }
        }
    }

    public static func write(base: GGUFFile, adapter: LoRAAdapter, precision: Precision = .f16, to url: URL) throws {
        var writer = GGUFWriter()
        writer.alignment = base.alignment
        for key in base.metadataKeys where key != "general.alignment" {
            if let value = base.metadata[key] { writer.set(key, value) }
        }
        writer.set("general.file_type", .uint(precision == .f32 ? 0 : precision == .f16 ? 1 : 7, .uint32))
        var merged: [String: LoRAModule] = [:]
        for (l, layer) in adapter.modules.enumerated() {
            for (target, m) in layer { merged[target.ggufName(layer: l)] = m }
        }
        for info in base.tensors {
            if let m = merged[info.name] {
                guard info.dims == [m.inFeatures, m.outFeatures] else {
                    throw GGUFError.wrongShape(path: base.path, tensor: info.name, expected: [m.inFeatures, m.outFeatures], found: info.dims)
                }
                let weight = Tensor(shape: [m.outFeatures, m.inFeatures], zeroed: false)
                Dequantize.tensor(info, from: base, into: weight.data)
                let delta = m.delta()
                for i in 0..<weight.count { weight.data[i] += delta.data[i] }
                // Q8_0 needs whole 32-value blocks per row; other rows fall back to F16 (as llama-quantize does).
                let p = precision == .q8_0 && m.inFeatures % 32 != 0 ? .f16 : precision
                writer.tensors.append(.init(name: info.name, dims: info.dims, type: p.type, data: encode(weight, p)))
            } else {
                let raw = base.data(of: info)
                writer.tensors.append(.init(name: info.name, dims: info.dims, type: info.type, data: Data(raw)))
            }
        }
        try writer.encoded().write(to: url, options: .atomic)
    }

    /// Encodes Float32 values as F32, F16 or Q8_0 (blocks of 32: an F16 scale d = max|x|/127 and
    /// 32 int8 values round(x/d), as llama.cpp's quantize_row_q8_0_ref).
    static func encode(_ t: Tensor, _ precision: Precision) -> Data {
        let n = t.count
        var out = Data()
        switch precision {
        case .f32:
            out = Data(buffer: UnsafeBufferPointer(start: t.data, count: n))
        case .f16:
            var halves = [UInt16](repeating: 0, count: n)
            for i in 0..<n { halves[i] = Float16(t.data[i]).bitPattern.littleEndian }
            out = halves.withUnsafeBufferPointer { Data(buffer: $0) }
        case .q8_0:
            precondition(n % 32 == 0, "Q8_0 needs a multiple of 32 values")
            out.reserveCapacity(n / 32 * 34)
            for block in 0..<(n / 32) {
                let x = t.data + block * 32
                var amax: Float = 0
                for i in 0..<32 { amax = max(amax, abs(x[i])) }
                let d = amax / 127, id = d > 0 ? 1 / d : 0
                withUnsafeBytes(of: Float16(d).bitPattern.littleEndian) { out.append(contentsOf: $0) }
                for i in 0..<32 { out.append(UInt8(bitPattern: Int8((x[i] * id).rounded()))) }
            }
        }
        withExtendedLifetime(t) {}
        return out
    }
}
