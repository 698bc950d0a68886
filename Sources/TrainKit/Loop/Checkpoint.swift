import Foundation
import TensorKit

/// Resumable training state in `<directory>/checkpoint/`: the trainable tensors and their AdamW
/// moments in `state-<step>.safetensors`, and `state.json` naming the current file, the step, the
/// run's fingerprint and any scalar state of the trainer (e.g. PPO's adaptive KL coefficient).
/// The tensors go to a file named by step and state.json is written atomically after it, so a
/// kill between the two writes leaves the previous checkpoint intact.
public struct CheckpointStore {
    public let directory: URL
    /// Identifies the run's inputs; a checkpoint made for another fingerprint is ignored.
    public let fingerprint: String

    public init(directory: URL, fingerprint: String) {
        self.directory = directory
        self.fingerprint = fingerprint
    }

    public func save(step: Int, parameters: [(name: String, value: Tensor, gradient: Tensor)], optimisers: [AdamW],
                     scalars: [String: Double] = [:]) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var tensors: [(name: String, tensor: Tensor)] = []
        var adamStep = 0
        for (p, adam) in zip(parameters, optimisers) {
            tensors.append((p.name, p.value))
            let s = adam.state
            adamStep = s.step
            if !s.m.isEmpty {
                tensors.append(("adam_m." + p.name, Tensor(shape: p.value.shape, values: s.m)))
                tensors.append(("adam_v." + p.name, Tensor(shape: p.value.shape, values: s.v)))
            }
        }
        let file = "state-\(step).safetensors"
        try Safetensors.write(tensors, to: directory.appendingPathComponent(file))
        let state: [String: Any] = ["step": step, "adam_step": adamStep, "fingerprint": fingerprint, "file": file, "scalars": scalars]
        let json = try JSONSerialization.data(withJSONObject: state, options: [.sortedKeys])
        try json.write(to: directory.appendingPathComponent("state.json"), options: .atomic)
        for old in (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        where old.hasPrefix("state-") && old.hasSuffix(".safetensors") && old != file {
            try? FileManager.default.removeItem(at: directory.appendingPathComponent(old))
        }
    }

    /// Restores the last checkpoint made for this fingerprint into the tensors and optimisers;
    /// returns its step and scalars (step 0 when there is none).
    public func restore(parameters: [(name: String, value: Tensor, gradient: Tensor)], optimisers: [AdamW]) throws
        -> (step: Int, scalars: [String: Double]) {
        guard let data = try? Data(contentsOf: directory.appendingPathComponent("state.json")),
              let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              state["fingerprint"] as? String == fingerprint, let step = state["step"] as? Int,
              let adamStep = state["adam_step"] as? Int, let name = state["file"] as? String else { return (0, [:]) }
        let file = try Safetensors.read(directory.appendingPathComponent(name))
        for (p, adam) in zip(parameters, optimisers) {
            try file.load(p.name, into: p.value)
            if let m = file.tensors["adam_m." + p.name], let v = file.tensors["adam_v." + p.name] {
                adam.restore(step: adamStep, m: m.values, v: v.values)
            }
        }
        let scalars = ((state["scalars"] as? [String: Any]) ?? [:]).compactMapValues { ($0 as? NSNumber)?.doubleValue }
        return (step, scalars)
    }
}

extension MetricsLog {
    /// Drops metric lines of steps after `step` (written after the checkpoint a rerun resumes from).
    static func truncate(_ url: URL, after step: Int) throws {
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = object["step"] as? Int else { return false }
            return s <= step
        }
        let out = kept.isEmpty ? "" : kept.joined(separator: "\n") + "\n"
        do { try out.write(to: url, atomically: true, encoding: .utf8) } catch {
            throw TrainingError.cannotWrite(path: url.path, reason: error.localizedDescription)
        }
    }
}
