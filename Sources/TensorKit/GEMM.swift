import CBLAS
import Foundation

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
    /// themselves). OpenBLAS's thread count is process-wide: overlapping callers share one
    /// single-threaded period (counted under a lock), and the count in force before the first is
    /// restored after the last; other products that run meanwhile use one thread too.
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        singleThreadLock.lock()
        if singleThreadUsers == 0 {
            savedThreads = threads
            if savedThreads != 1 { threads = 1 }
        }
        singleThreadUsers += 1
        singleThreadLock.unlock()
        defer {
            singleThreadLock.lock()
            singleThreadUsers -= 1
            if singleThreadUsers == 0 && savedThreads != 1 { threads = savedThreads }
            singleThreadLock.unlock()
        }
        return try body()
    }

    private static let singleThreadLock = NSLock()
    nonisolated(unsafe) private static var singleThreadUsers = 0
    nonisolated(unsafe) private static var savedThreads = 1
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
