import Testing
@testable import TensorKit

/// OpenBLAS products against a naive triple loop in Double.
@Suite struct GEMMTests {
    /// Deterministic pseudo-random values in [-1, 1) (SplitMix64).
    func values(_ count: Int, seed: UInt64) -> [Float] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 11) / Double(1 << 53) * 2 - 1)
        }
    }

    @Test(arguments: [(1, 1, 1), (3, 5, 7), (17, 33, 64), (64, 128, 96)])
    func transposedBMatchesNaive(m: Int, n: Int, k: Int) {
        let a = values(m * k, seed: 1), b = values(n * k, seed: 2)
        var c = [Float](repeating: 0, count: m * n)
        GEMM.matmulTransposedB(a, b, &c, m: m, n: n, k: k)
        for i in 0..<m {
            for j in 0..<n {
                var expected = 0.0
                for p in 0..<k { expected += Double(a[i * k + p]) * Double(b[j * k + p]) }
                #expect(abs(Double(c[i * n + j]) - expected) < 1e-4)
            }
        }
    }

    @Test func plainAndTransposedAAgree() {
        let (m, n, k) = (6, 4, 5)
        let a = values(m * k, seed: 3), b = values(k * n, seed: 4)
        var c = [Float](repeating: 0, count: m * n)
        GEMM.matmul(a, b, &c, m: m, n: n, k: k)
        // Aᵀ stored (k, m): the same product through the transposed-A path.
        var at = [Float](repeating: 0, count: k * m)
        for i in 0..<m { for p in 0..<k { at[p * m + i] = a[i * k + p] } }
        var c2 = [Float](repeating: 1, count: m * n)
        GEMM.matmulTransposedA(at, b, &c2, m: m, n: n, k: k, beta: 0)
        for i in 0..<(m * n) {
            var expected = 0.0
            let (r, col) = (i / n, i % n)
            for p in 0..<k { expected += Double(a[r * k + p]) * Double(b[p * n + col]) }
            #expect(abs(Double(c[i]) - expected) < 1e-4)
            #expect(abs(c2[i] - c[i]) < 1e-5)
        }
    }
}
