import Foundation

/// One turn of a conversation.
public struct ChatMessage: Sendable, Hashable, Codable {
    public enum Role: String, Sendable, Codable { case system, user, assistant }
    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }

    public static func system(_ text: String) -> ChatMessage { ChatMessage(role: .system, content: text) }
    public static func user(_ text: String) -> ChatMessage { ChatMessage(role: .user, content: text) }
    public static func assistant(_ text: String) -> ChatMessage { ChatMessage(role: .assistant, content: text) }
}

/// Chat formats per model family, written out rather than interpreted from the GGUF's Jinja
/// template. The rendered text is tokenized with special-token parsing on; BOS comes from the
/// tokenizer (`add_bos_token`), not from the text.
public enum ChatTemplate: Sendable, Equatable {
    /// Gemma: `<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n`; the system prompt
    /// is folded into the first user turn (Gemma has no system role).
    case gemma
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`.
    case llama3
    /// ChatML (Qwen, SmolLM): `<|im_start|>role\n…<|im_end|>\n`, with the family's default
    /// system prompt when the conversation has none (Qwen 2.5's template adds one).
    case chatML(defaultSystem: String?)

    public var name: String {
        switch self {
        case .gemma: "gemma"
        case .llama3: "llama3"
        case .chatML: "chatml"
        }
    }

    /// The family's template, from the GGUF's `tokenizer.chat_template` text or the architecture.
    public static func detect(file: GGUFFile) -> ChatTemplate? {
        let template = (try? file.string("tokenizer.chat_template")) ?? ""
        let architecture = (try? file.string("general.architecture")) ?? ""
        if template.contains("<start_of_turn>") || architecture.hasPrefix("gemma") { return .gemma }
        if template.contains("<|start_header_id|>") { return .llama3 }
        if template.contains("<|im_start|>") || architecture == "qwen2" {
            let qwenDefault = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
            return .chatML(defaultSystem: template.contains(qwenDefault) ? qwenDefault : nil)
        }
        return nil
    }

    /// The prompt text for `messages`; with `addGenerationPrompt` it ends where the assistant's
    /// reply begins.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        switch self {
        case .gemma:
            var pendingSystem: String?
            for message in messages {
                switch message.role {
                case .system:
                    pendingSystem = message.content
                case .user:
                    var content = message.content
                    if let system = pendingSystem {
                        content = system + "\n\n" + content
                        pendingSystem = nil
                    }
                    out += "<start_of_turn>user\n\(content)<end_of_turn>\n"
                case .assistant:
                    out += "<start_of_turn>model\n\(message.content)<end_of_turn>\n"
                }
            }
            if addGenerationPrompt { out += "<start_of_turn>model\n" }
        case .llama3:
            for message in messages {
                out += "<|start_header_id|>\(message.role.rawValue)<|end_header_id|>\n\n\(message.content)<|eot_id|>"
            }
            if addGenerationPrompt { out += "<|start_header_id|>assistant<|end_header_id|>\n\n" }
        case .chatML(let defaultSystem):
            if messages.first?.role != .system, let defaultSystem {
                out += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
            }
            for message in messages {
                out += "<|im_start|>\(message.role.rawValue)\n\(message.content)<|im_end|>\n"
            }
            if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        }
        return out
    }
}
