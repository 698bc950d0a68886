import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What kind of filesystem object a path is, so readers refuse FIFOs, devices and directories
/// with a message that says so instead of hanging on a FIFO or blaming permissions.
public enum FileKind: Sendable, Equatable {
    case regular
    case directory
    case fifo
    case device
    case socket
    case missing

    /// The kind of `path` after following symbolic links.
    public static func of(_ path: String) -> FileKind {
        var st = stat()
        guard stat(path, &st) == 0 else { return .missing }
        return kind(mode: st.st_mode)
    }

    public static func kind(mode: mode_t) -> FileKind {
        switch mode & S_IFMT {
        case S_IFREG: return .regular
        case S_IFDIR: return .directory
        case S_IFIFO: return .fifo
        case S_IFCHR, S_IFBLK: return .device
        case S_IFSOCK: return .socket
        default: return .device
        }
    }

    /// "a directory", "a FIFO (named pipe)", … for messages.
    public var phrase: String {
        switch self {
        case .regular: return "a regular file"
        case .directory: return "a directory"
        case .fifo: return "a FIFO (named pipe)"
        case .device: return "a device"
        case .socket: return "a socket"
        case .missing: return "missing"
        }
    }
}

/// Control characters made visible, for text from models or files printed on a terminal: an
/// escape sequence in model output must not recolour, retitle or rewrite the user's terminal.
public enum TerminalText {
    /// Replaces C0 controls except newline and tab, DEL and C1 controls by `\u{…}` escapes.
    public static func escaped(_ text: String, keepNewlines: Bool = true) -> String {
        var out = ""
        out.reserveCapacity(text.unicodeScalars.count)
        for scalar in text.unicodeScalars {
            let v = scalar.value
            let control = v < 0x20 || v == 0x7F || (0x80...0x9F).contains(v)
            if control && !(keepNewlines && (v == 0x0A || v == 0x09)) {
                out += "\\u{" + String(v, radix: 16, uppercase: true) + "}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// At most `limit` characters of `text`, escaped and on one line, for quoting bad input in
    /// an error message without echoing a whole line of a file that may be private.
    public static func excerpt(_ text: String, limit: Int = 16) -> String {
        let cut = text.count > limit ? String(text.prefix(limit)) + "…" : text
        return escaped(cut, keepNewlines: false)
    }
}

/// A Foundation file error as one short phrase ("No such file or directory"), instead of the
/// NSError dump Foundation prints on Linux.
public enum FileProblem {
    public static func describe(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if ns.domain == NSCocoaErrorDomain {
            switch ns.code {
            case 4, 260: return "no such file or directory"
            case 257, 513: return "permission denied"
            case 640: return "no space left on the device"
            case 642: return "read-only file system"
            case 516: return "a file of that name exists already"
            default: break
            }
        }
        return ns.localizedDescription.replacingOccurrences(of: "The operation could not be completed. ", with: "")
    }

    /// The path a Foundation file error is about, when it names one.
    public static func path(_ error: Error) -> String? {
        let ns = error as NSError
        return (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    }
}
