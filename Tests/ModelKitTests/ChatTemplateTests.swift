import Testing
@testable import ModelKit

/// Golden renderings per family; the reference texts of Fixtures/reference are the same strings.
@Suite struct ChatTemplateTests {
    let conversation: [ChatMessage] = [.system("Be brief."), .user("Hi"), .assistant("Hello."), .user("How do I remove a stripped screw?")]

    @Test func gemmaFoldsSystemIntoFirstUserTurn() {
        #expect(ChatTemplate.gemma.render(conversation) ==
            "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nHow do I remove a stripped screw?<end_of_turn>\n<start_of_turn>model\n")
        #expect(ChatTemplate.gemma.render([.user("How do I remove a stripped screw?")]) ==
            "<start_of_turn>user\nHow do I remove a stripped screw?<end_of_turn>\n<start_of_turn>model\n")
    }

    @Test func chatMLWithAndWithoutDefaultSystem() {
        let qwen = ChatTemplate.chatML(defaultSystem: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        #expect(qwen.render([.user("Hi")]) ==
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(qwen.render([.system("You are a helpful assistant."), .user("How do I remove a stripped screw?")]) ==
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHow do I remove a stripped screw?<|im_end|>\n<|im_start|>assistant\n")
        #expect(ChatTemplate.chatML(defaultSystem: nil).render([.user("Hi")], addGenerationPrompt: false) == "<|im_start|>user\nHi<|im_end|>\n")
    }

    @Test func llama3() {
        #expect(ChatTemplate.llama3.render([.system("S"), .user("U")]) ==
            "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    }

    @Test(.enabled(if: TestModels.available(TestModels.gemmaName) && TestModels.available(TestModels.qwenName), "gemma-3-270m or qwen2.5-coder-0.5b-instruct is not in the model cache (`precept model pull gemma-3-270m qwen2.5-coder-0.5b-instruct` fetches both; scripts/test.sh runs it)"))
    func detectedFromModelFiles() throws {
        #expect(ChatTemplate.detect(file: try TestModels.file(TestModels.gemmaName)) == .gemma)
        #expect(ChatTemplate.detect(file: try TestModels.file(TestModels.qwenName))
            == .chatML(defaultSystem: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."))
        // Rendered chat text tokenizes to the reference's special-token ids.
        let tokenizer = try TestModels.tokenizer(TestModels.qwenName)
        let refs = try TestModels.reference(TestModels.qwenName, "tokens.json", as: [TokenReference].self)
        let chat = try #require(refs.first { $0.text.hasPrefix("<|im_start|>system") })
        let rendered = ChatTemplate.chatML(defaultSystem: nil).render([.system("You are a helpful assistant."), .user("How do I remove a stripped screw?")])
        #expect(tokenizer.encode(rendered, addBOS: nil, parseSpecial: true) == chat.ids_special)
    }
}
