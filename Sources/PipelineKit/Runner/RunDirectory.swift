import Foundation
import ModelKit
#if canImport(Glibc)
import Glibc
#endif

/// Where a run may be written and whose it is. A run directory holds one pipeline's run:
/// `run.sqlite`, the report, exports and training outputs. It is never `/`, never a folder that
/// holds the pipeline's own input files, never inside a project's source folders, and never a
/// folder of other files or another pipeline's run unless `--force` says so.
public enum RunDirectory {
    /// Folders named like this that hold an input of the pipeline are project folders, not run
    /// folders (`output: constitutions/run` would write beside the constitution).
    static let inputFolderNames: Set<String> = ["constitutions", "pipelines", "prompts"]
    /// Source folders of the project the pipeline sits in (a folder with Package.swift or .git).
    static let sourceFolderNames = ["Sources", "Tests", "constitutions", "pipelines", "data", "docs", "scripts",
                                    "Benchmarks", ".git", ".ci"]
    /// Files a run writes itself; they do not make a folder "someone else's".
    static let ownFiles: Set<String> = ["run.lock"]

    /// Throws `RunError.unsafeOutput` when `directory` must never hold a run of `pipeline`.
    public static func checkPlace(_ directory: URL, pipeline: Pipeline) throws {
        do { try checkPlace(resolved(directory), pipeline: pipeline) } catch RunError.unsafeOutput(_, let reason) {
            throw RunError.unsafeOutput(path: directory.path,
                                        reason: reason + "; set `output:` (or --output) to a folder of the run's own")
        }
    }

    private static func checkPlace(_ target: String, pipeline: Pipeline) throws {
        let directory = URL(fileURLWithPath: target)
        if target == "/" { throw RunError.unsafeOutput(path: directory.path, reason: "it is the filesystem root") }
        let inputs = inputFiles(pipeline).map(resolved)
        for input in inputs where contains(target, input) {
            throw RunError.unsafeOutput(path: directory.path,
                                        reason: "it holds the pipeline's own input \(input); a run would write among them")
        }
        for input in inputs {
            let folder = (input as NSString).deletingLastPathComponent
            if inputFolderNames.contains((folder as NSString).lastPathComponent), contains(folder, target) {
                throw RunError.unsafeOutput(path: directory.path, reason: "it is inside \(folder), which holds the pipeline's inputs")
            }
        }
        if let root = projectRoot(from: resolved(URL(fileURLWithPath: pipeline.file))) {
            for name in sourceFolderNames {
                let folder = (root as NSString).appendingPathComponent(name)
                if contains(folder, target) {
                    throw RunError.unsafeOutput(path: directory.path, reason: "it is inside the project's source folder \(folder)")
                }
            }
        }
    }

    /// Makes sure the existing contents of `directory` are this pipeline's run, before the run
    /// store is opened. Another pipeline's run is moved aside with `force` (nothing is deleted);
    /// a folder of other files is used with `force`.
    /// - Returns: a message for the user when something was moved aside.
    public static func claim(_ directory: URL, pipelineName: String, force: Bool) throws -> String? {
        let database = RunStore.databaseURL(in: directory)
        let fm = FileManager.default
        guard fm.fileExists(atPath: database.path) else {
            let entries = ((try? fm.contentsOfDirectory(atPath: directory.path)) ?? [])
                .filter { !ownFiles.contains($0) || FileKind.of(directory.appendingPathComponent($0).path) != .regular }.sorted()
            if !entries.isEmpty && !force {
                throw RunError.notEmpty(path: directory.path, entries: Array(entries.prefix(3)), count: entries.count)
            }
            return nil
        }
        let owner = try RunStore(directory: directory, create: false)
        // Runs written before the name was stored: the name from the stored pipeline text.
        var name = try owner.meta("pipeline_name")
        if name == nil, let text = try owner.meta("pipeline_yaml"),
           let node = try? YAMLDocument.parse(data: Data(text.utf8), file: "run.sqlite"),
           let map = try? NodeReader(node: node, path: "", file: "run.sqlite").mapping(allowed: Pipeline.topKeys) {
            name = try? map["name"]?.text()
        }
        let ownerPath = try owner.meta("pipeline_path")
        // A store with no pipeline text at all (a run stopped before its first write) is anyone's.
        guard let name, name != pipelineName else { return nil }
        guard force else { throw RunError.otherPipeline(path: directory.path, owner: name, ownerFile: ownerPath) }
        // Everything of the other run moves into one folder beside it: store, report, exports,
        // adapters and checkpoints alike, so nothing of it is overwritten or deleted.
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let aside = directory.appendingPathComponent("previous-\(name)-\(stamp)")
        try fm.createDirectory(at: aside, withIntermediateDirectories: false)
        for entry in try fm.contentsOfDirectory(atPath: directory.path)
        where !ownFiles.contains(entry) && entry != aside.lastPathComponent && !entry.hasPrefix("previous-") {
            try fm.moveItem(at: directory.appendingPathComponent(entry), to: aside.appendingPathComponent(entry))
        }
        return "--force: the run of pipeline `\(name)` in \(directory.path) was moved to \(aside.lastPathComponent)/; a new run starts"
    }

    /// Every file the pipeline reads: itself, its constitutions, prompt sets and local model files.
    static func inputFiles(_ pipeline: Pipeline) -> [URL] {
        [URL(fileURLWithPath: pipeline.file)] + pipeline.fileReferences.map { URL(fileURLWithPath: $0.path) }
    }

    /// The absolute path with symbolic links resolved, as far as the path exists.
    static func resolved(_ url: URL) -> String {
        let standard = url.standardizedFileURL
        var existing = standard
        var rest: [String] = []
        while !FileManager.default.fileExists(atPath: existing.path), existing.path != "/" {
            rest.insert(existing.lastPathComponent, at: 0)
            existing = existing.deletingLastPathComponent()
        }
        var path = existing.resolvingSymlinksInPath().path
        for component in rest { path = (path as NSString).appendingPathComponent(component) }
        return path
    }

    /// Whether `inner` is `outer` or lies inside it.
    static func contains(_ outer: String, _ inner: String) -> Bool {
        outer == "/" || inner == outer || inner.hasPrefix(outer.hasSuffix("/") ? outer : outer + "/")
    }

    /// The nearest folder above `file` that holds Package.swift or .git.
    static func projectRoot(from file: String) -> String? {
        var folder = (file as NSString).deletingLastPathComponent
        while folder != "/" && !folder.isEmpty {
            for marker in ["Package.swift", ".git"]
            where FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent(marker)) {
                return folder
            }
            folder = (folder as NSString).deletingLastPathComponent
        }
        return nil
    }
}

/// An exclusive lock on a run directory (`run.lock`, flock), held while a run writes it, so two
/// processes never execute the same run's model calls twice or interleave their batches.
public final class RunLock {
    private var descriptor: Int32

    /// Takes the lock or throws `RunError.locked` naming the process that holds it.
    public init(directory: URL) throws {
        let path = directory.appendingPathComponent("run.lock").path
        // O_NOFOLLOW and a regular-file check: a run.lock that is a link elsewhere is never truncated.
        descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        var st = stat()
        guard descriptor >= 0, fstat(descriptor, &st) == 0, FileKind.kind(mode: st.st_mode) == .regular else {
            if descriptor >= 0 { close(descriptor) }
            descriptor = -1
            throw RunError.unsafeOutput(path: path, reason: "run.lock is not a regular file this process can open")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            close(descriptor)
            descriptor = -1
            throw RunError.locked(path: directory.path, holder: holder.flatMap { $0.isEmpty ? nil : $0 } ?? "another process")
        }
        let note = "process \(getpid()) (\(ProcessInfo.processInfo.arguments.prefix(3).joined(separator: " "))), since \(ISO8601DateFormatter().string(from: Date()))\n"
        _ = ftruncate(descriptor, 0)
        _ = note.withCString { write(descriptor, $0, strlen($0)) }
    }

    /// Releases the lock (also done on deinit and by the kernel when the process exits).
    public func release() {
        guard descriptor >= 0 else { return }
        _ = ftruncate(descriptor, 0)
        flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
