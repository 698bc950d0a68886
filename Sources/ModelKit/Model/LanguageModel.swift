import Foundation
import TensorKit

/// A loaded model: weights, tokenizer and LM head, ready for generation and scoring.
public final class LanguageModel: @unchecked Sendable {
    public let path: String
    public let file: GGUFFile
    public let config: TransformerConfig
    public let transformer: Transformer
    public let tokenizer: GGUFTokenizer
    public let head: LogitHead
    /// The family's chat format, or nil for models without one (completion prompts only).
    public let chatTemplate: ChatTemplate?

    /// Loads a GGUF file. With `.quantized` (the default) linear weights stay in their block
    /// formats in the memory-mapped file; `.float32` dequantizes them at load. `int8Activations`
    /// (default: `WeightMatrix.int8Activations`) rounds activations to 8 bits for quantized
    /// weights, as llama.cpp does; false multiplies Float32 activations.
    public init(path: String, storage: WeightStorage = .quantized, int8Activations: Bool = WeightMatrix.int8Activations) throws {
        self.path = path
        file = try GGUFFile(path: path)
        config = try ArchitectureRegistry.config(for: file)
        let weights = try WeightReader(file: file, storage: storage).weights(config)
        transformer = Transformer(config: config, weights: weights, int8Activations: int8Activations)
        tokenizer = try GGUFTokenizer(file: file)
        head = LogitHead(head: weights.head, int8Activations: int8Activations)
        chatTemplate = ChatTemplate.detect(file: file)
    }

    /// The same model (file, tokenizer, LM head) running on other transformer weights, e.g. with
    /// a LoRA adapter merged in memory for sampling during RL training.
    public init(_ other: LanguageModel, weights: TransformerWeights) {
        path = other.path
        file = other.file
        config = other.config
        transformer = Transformer(config: other.config, weights: weights, int8Activations: other.transformer.int8Activations)
        tokenizer = other.tokenizer
        head = other.head
        chatTemplate = other.chatTemplate
    }

    /// Token ids of a conversation in the model's chat format (BOS as its metadata says).
    public func encodeChat(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> [Int32]? {
        guard let chatTemplate else { return nil }
        return tokenizer.encode(chatTemplate.render(messages, addGenerationPrompt: addGenerationPrompt),
                                addBOS: nil, parseSpecial: true)
    }
}
