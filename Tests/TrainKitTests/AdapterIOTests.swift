import Foundation
import Testing
@testable import ModelKit
import TensorKit
import TestSupport
@testable import TrainKit

/// PEFT adapter layout, safetensors parsing and merged GGUF export.
@Suite struct AdapterIOTests {
    func tempDirectory() -> URL {
        let url = scratchURL("precept-adapter-\(UUID())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// gemma-3-270m's dimensions (Hugging Face config.json: hidden_size 640, 18 layers, 4 heads,
    /// 1 KV head, head_dim 256, intermediate_size 2048).
    func gemma270m() -> TransformerConfig {
        let rope = RoPE(style: .neox, dims: 256, base: 1_000_000)
        return TransformerConfig(architecture: "gemma3", vocabSize: 262_144, hidden: 640, layers: 18, heads: 4, kvHeads: 1,
                                 headDim: 256, ffn: 2048, contextLength: 32_768, normEps: 1e-6, embeddingScale: Float(640).squareRoot(),
                                 activation: .geluTanh, attentionScale: 1 / 16, qkNorm: true, postNorms: true,
                                 globalRoPE: rope, localRoPE: rope, slidingWindow: 512, slidingLayers: Array(repeating: false, count: 18))
    }

    @Test func peftNamesAndShapesForGemma3() throws {
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 16, alpha: 32), model: gemma270m(), seed: 1)
        let tensors = PEFTAdapter.tensors(adapter)
        // PEFT's names for a LoRA on Gemma3ForCausalLM (get_peft_model_state_dict drops the adapter name).
        let expectedLayer0: [(String, [Int])] = [
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", [16, 640]),
            ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", [1024, 16]),
            ("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight", [16, 640]),
            ("base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight", [256, 16]),
            ("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight", [16, 640]),
            ("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight", [256, 16]),
            ("base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight", [16, 1024]),
            ("base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight", [640, 16]),
            ("base_model.model.model.layers.0.mlp.gate_proj.lora_A.weight", [16, 640]),
            ("base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight", [2048, 16]),
            ("base_model.model.model.layers.0.mlp.up_proj.lora_A.weight", [16, 640]),
            ("base_model.model.model.layers.0.mlp.up_proj.lora_B.weight", [2048, 16]),
            ("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", [16, 2048]),
            ("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight", [640, 16]),
        ]
        #expect(tensors.count == 18 * 14)
        for (i, (name, shape)) in expectedLayer0.enumerated() {
            #expect(tensors[i].name == name)
            #expect(tensors[i].tensor.shape == shape)
        }
        #expect(tensors.last?.name == "base_model.model.model.layers.17.mlp.down_proj.lora_B.weight")

        let dir = tempDirectory()
        try PEFTAdapter.save(adapter, baseModel: "google/gemma-3-270m", to: dir)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("adapter_config.json"))) as! [String: Any]
        #expect(config["peft_type"] as? String == "LORA" && config["task_type"] as? String == "CAUSAL_LM")
        #expect(config["r"] as? Int == 16 && (config["lora_alpha"] as? NSNumber)?.doubleValue == 32)
        #expect(config["target_modules"] as? [String] == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"])
        #expect(config["base_model_name_or_path"] as? String == "google/gemma-3-270m")
        let file = try Safetensors.read(dir.appendingPathComponent("adapter_model.safetensors"))
        #expect(Set(file.tensors.keys) == Set(tensors.map(\.name)))
        #expect(file.tensors[expectedLayer0[1].0]?.shape == [1024, 16])
    }

    @Test func saveLoadRoundTripIncludingScoreHead() throws {
        let url = scratchURL("precept-io-\(UUID()).gguf")
        try TinyModel(family: .llama3, seed: 3).write(to: url)
        let lm = try LanguageModel(path: url.path)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 2, alpha: 4, targets: [.q, .k, .down]), model: lm.config, seed: 4)
        for p in adapter.parameters { for i in 0..<p.value.count { p.value[i] = Float(i % 7) * 0.1 - 0.3 } }
        let head = RewardHead(hidden: lm.config.hidden, seed: 2)
        let dir = tempDirectory()
        try PEFTAdapter.save(adapter, scoreHead: head, baseModel: "tiny", to: dir)
        let (loaded, loadedHead) = try PEFTAdapter.load(dir, model: lm.config)
        #expect(loaded.config == adapter.config)
        for (a, b) in zip(adapter.parameters, loaded.parameters) { #expect(a.name == b.name && a.value.array == b.value.array) }
        #expect(loadedHead?.weight.array == head.weight.array)
        // Llama q/k rows are permuted between llama.cpp and Hugging Face order: the file differs, the round trip does not.
        let file = try Safetensors.read(dir.appendingPathComponent("adapter_model.safetensors"))
        let qB = adapter.modules[0][.q]!.b
        #expect(file.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]!.values != qB.array)
    }

    @Test func malformedSafetensorsAreErrorsNamingTheOffset() throws {
        let ones = [Float](repeating: 1, count: 4)
        let good = ones.withUnsafeBufferPointer { Safetensors.encode([("w", [2, 2], $0)]) }
        #expect(throws: SafetensorsError.self) { try Safetensors.parse(Data([1, 2, 3]), path: "x.safetensors") }
        for cut in [8, 20, good.count - 1] {
            #expect(throws: SafetensorsError.self) { try Safetensors.parse(good.prefix(cut), path: "x.safetensors") }
        }
        var huge = good
        huge[7] = 0x7F   // header length far past the end
        #expect(throws: SafetensorsError.malformed(path: "x.safetensors", offset: 0,
                                                   reason: "header length \(UInt64(good[0]) | 0x7F << 56) runs past the end of the file (\(good.count) bytes)")) {
            try Safetensors.parse(huge, path: "x.safetensors")
        }
        var text = String(decoding: good, as: UTF8.self)
        text = text.replacingOccurrences(of: "[0,16]", with: "[0,64]")
        #expect(throws: SafetensorsError.self) { try Safetensors.parse(Data(text.utf8), path: "x.safetensors") }
        #expect(try Safetensors.parse(good, path: "x").tensors["w"]?.values == [1, 1, 1, 1])
    }

    @Test(arguments: [MergedModel.Precision.f32, .f16, .q8_0])
    func mergedGGUFReproducesTheAdaptedModel(precision: MergedModel.Precision) throws {
        let url = scratchURL("precept-merge-\(UUID()).gguf")
        let tiny = TinyModel(family: .gemma3, seed: 5, vocab: 40, hidden: 64, layers: 2)   // rows of 64 and 96: whole Q8_0 blocks
        try tiny.write(to: url)
        let lm = try LanguageModel(path: url.path)
        let adapter = LoRAAdapter(config: LoRAConfig(rank: 4, alpha: 8), model: lm.config, seed: 9)
        for p in adapter.parameters where p.name.contains("lora_B") { for i in 0..<p.value.count { p.value[i] = Float((i * 37) % 11) * 0.02 - 0.1 } }
        let adapted = TrainableTransformer(base: lm.transformer, adapter: adapter)
        adapted.training = false
        let tokens: [Int32] = [2, 9, 4, 17, 11, 30, 5]
        let want = adapted.forward([tokens], keep: false).hidden
        let out = url.deletingPathExtension().appendingPathExtension("merged-\(precision).gguf")
        try MergedModel.write(base: lm.file, adapter: adapter, precision: precision, to: out)
        let merged = try LanguageModel(path: out.path)
        let got = merged.transformer.forward([SequenceInput(cache: merged.transformer.makeCache(), tokens: tokens)])
        let base = lm.transformer.forward([SequenceInput(cache: lm.transformer.makeCache(), tokens: tokens)])
        let tolerance: Float = precision == .f32 ? 1e-4 : precision == .f16 ? 1e-2 : 5e-2
        var maxDiff: Float = 0, adapterEffect: Float = 0
        for i in 0..<want.count {
            maxDiff = max(maxDiff, abs(got.data[i] - want.data[i]))
            adapterEffect = max(adapterEffect, abs(base.data[i] - want.data[i]))
        }
        #expect(maxDiff < tolerance, "merged \(precision) differs by \(maxDiff)")
        #expect(adapterEffect > 10 * tolerance, "the adapter must change the model for this test to mean anything")
        #expect(merged.file.tensor(named: "blk.0.attn_q.weight")?.type.name == precision.rawValue.uppercased())
        #expect(merged.file.metadataKeys.filter { $0 != "general.file_type" } == lm.file.metadataKeys.filter { $0 != "general.file_type" })
    }
}
