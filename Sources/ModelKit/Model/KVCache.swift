import Foundation

/// Keys and values of one sequence for every layer, grown as positions are added.
///
/// Layout per layer: (capacity, kvDim) row-major, row p holding position p (after RoPE).
/// A cache can be copied, so a shared prompt prefix is computed once and each continuation
/// starts from a copy (DESIGN.md § Performance, shared prefixes).
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvDim: Int
    /// Positions filled.
    public private(set) var length = 0
    public private(set) var capacity: Int
    private var keys: [UnsafeMutablePointer<Float>]
    private var values: [UnsafeMutablePointer<Float>]

    public init(layers: Int, kvDim: Int, capacity: Int = 256) {
        self.layers = layers
        self.kvDim = kvDim
        self.capacity = max(capacity, 1)
        keys = (0..<layers).map { _ in .allocate(capacity: max(capacity, 1) * kvDim) }
        values = (0..<layers).map { _ in .allocate(capacity: max(capacity, 1) * kvDim) }
    }

    deinit {
        keys.forEach { $0.deallocate() }
        values.forEach { $0.deallocate() }
    }

    /// Bytes held.
    public var byteCount: Int { layers * 2 * capacity * kvDim * 4 }

    /// Makes room for `total` positions, keeping what is filled.
    public func reserve(_ total: Int) {
        guard total > capacity else { return }
        let newCapacity = max(total, capacity * 2)
        for l in 0..<layers {
            for isKey in [true, false] {
                let old = isKey ? keys[l] : values[l]
                let fresh = UnsafeMutablePointer<Float>.allocate(capacity: newCapacity * kvDim)
                fresh.update(from: old, count: length * kvDim)
                old.deallocate()
                if isKey { keys[l] = fresh } else { values[l] = fresh }
            }
        }
        capacity = newCapacity
    }

    public func keys(_ layer: Int) -> UnsafeMutablePointer<Float> { keys[layer] }
    public func values(_ layer: Int) -> UnsafeMutablePointer<Float> { values[layer] }

    /// Marks `count` more positions as filled (after every layer has written them).
    public func advance(by count: Int) {
        precondition(length + count <= capacity)
        length += count
    }

    /// Forgets positions from `newLength` on.
    public func truncate(to newLength: Int) {
        length = min(length, max(0, newLength))
    }

    /// An independent copy holding the same positions (with room for `extra` more).
    public func copy(reserving extra: Int = 0) -> KVCache {
        let c = KVCache(layers: layers, kvDim: kvDim, capacity: length + max(extra, 1))
        for l in 0..<layers {
            c.keys[l].update(from: keys[l], count: length * kvDim)
            c.values[l].update(from: values[l], count: length * kvDim)
        }
        c.length = length
        return c
    }
}
