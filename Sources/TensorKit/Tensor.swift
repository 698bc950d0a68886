import Foundation

/// A Float32 tensor over one contiguous, owned, 64-byte-aligned allocation (row-major).
/// Hot loops take its `data` pointer directly.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    /// A zero-filled tensor; `zeroed: false` leaves the memory for the caller to fill
    /// (weights dequantized straight into it, outputs a GEMM overwrites).
    public init(shape: [Int], zeroed: Bool = true) {
        self.shape = shape
        count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { data.initialize(repeating: 0, count: max(count, 1)) }
    }

    public convenience init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill shape \(shape)")
        self.init(shape: shape, zeroed: false)
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    /// Rows of a matrix (first dimension) and their length (product of the rest).
    public var rows: Int { shape.first ?? 1 }
    public var columns: Int { shape.count > 1 ? count / max(rows, 1) : count }

    public func row(_ r: Int) -> UnsafeMutablePointer<Float> { data + r * columns }

    /// Element access (bounds-checked) that keeps the tensor alive for the access.
    public subscript(index: Int) -> Float {
        get { precondition(index >= 0 && index < count); return data[index] }
        set { precondition(index >= 0 && index < count); data[index] = newValue }
    }

    /// A new tensor with the same shape and values.
    public func copy() -> Tensor {
        let out = Tensor(shape: shape, zeroed: false)
        out.data.update(from: data, count: max(count, 1))
        return out
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }
}
