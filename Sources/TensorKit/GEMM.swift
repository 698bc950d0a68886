import CBLAS

/// Row-major single-precision matrix products on OpenBLAS.
///
/// Weights are stored as llama.cpp and PyTorch store them, `(out, in)` row-major, so the
/// common product is `Y = X · Wᵀ`.
public enum GEMM {
    /// `C(m, n) = alpha · A(m, k) · B(n, k)ᵀ + beta · C` — activations times transposed weights.
    public static func matmulTransposedB(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        strided(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: alpha, a, lda: k, b, ldb: k, beta: beta, c, ldc: n)
    }

    /// `C(m, n) = alpha · A(m, k) · B(k, n) + beta · C`.
    public static func matmul(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        strided(transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: k, b, ldb: n, beta: beta, c, ldc: n)
    }

    /// `C(m, n) = alpha · A(k, m)ᵀ · B(k, n) + beta · C` — the weight-gradient product.
    public static func matmulTransposedA(
        _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>,
        m: Int, n: Int, k: Int, alpha: Float = 1, beta: Float = 0
    ) {
        strided(transposeA: true, transposeB: false, m: m, n: n, k: k, alpha: alpha, a, lda: m, b, ldb: n, beta: beta, c, ldc: n)
    }

    /// Number of threads OpenBLAS uses.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// Runs `body` with OpenBLAS on one thread (callers that split the work across cores
    /// themselves), restoring the thread count after. The count is process-wide: not for use
    /// while other threads run their own products.
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        let saved = threads
        if saved != 1 { threads = 1 }
        defer { if saved != 1 { threads = saved } }
        return try body()
    }
}

extension GEMM {
    /// General strided product: `C = alpha · op(A) · op(B) + beta · C`, row-major with leading
    /// dimensions (row strides) `lda`, `ldb`, `ldc` — for heads and cache rows inside larger rows.
    public static func strided(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0)
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
