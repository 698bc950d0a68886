import Foundation

/// One directory per test process, `<tmp>/precept-tests-<pid>`, that every test's temporary files
/// and directories live in; it is removed when the process exits (set PRECEPT_KEEP_TEST_FILES=1
/// to keep it for a failing test's files).
public let scratchRoot: URL = {
    let root = URL(fileURLWithPath: scratchRootPath)
    try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    if ProcessInfo.processInfo.environment["PRECEPT_KEEP_TEST_FILES"] != "1" {
        atexit { try? FileManager.default.removeItem(atPath: scratchRootPath) }
    }
    return root
}()

private let scratchRootPath = FileManager.default.temporaryDirectory.appendingPathComponent("precept-tests-\(getpid())").path

/// A path for one test's file or directory inside `scratchRoot` (not created).
public func scratchURL(_ name: String) -> URL {
    scratchRoot.appendingPathComponent(name)
}
