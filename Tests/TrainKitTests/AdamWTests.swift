import Testing
@testable import TrainKit

/// AdamW against values worked out by hand (PyTorch's update order).
@Suite struct AdamWTests {
    @Test func twoStepsByHand() {
        // lr 0.1, β = (0.9, 0.999), ε = 1e-8, λ = 0.01; gradients 0.5 then −0.2.
        // Step 1: m̂ = 0.5, v̂ = 0.25 → p = 1·(1 − 0.001) − 0.1·0.5/0.5 = 0.899.
        // Step 2: m = 0.025, v = 0.00028975, m̂ = 0.025/0.19, v̂ = 0.00028975/0.001999
        //         → p = 0.899·0.999 − 0.1·0.3456062 = 0.8635404.
        let optimizer = AdamW(config: AdamWConfig(learningRate: 0.1, weightDecay: 0.01))
        var p: [Float] = [1.0, -2.0]
        optimizer.update(&p, gradients: [0.5, 0], count: 2)
        #expect(abs(p[0] - 0.899) < 1e-6)
        #expect(abs(p[1] - -2.0 * 0.999) < 1e-6, "a zero gradient still decays the weight")
        optimizer.update(&p, gradients: [-0.2, 0], count: 2)
        #expect(abs(p[0] - 0.8635404) < 1e-6)
        #expect(optimizer.step == 2)
    }

    @Test func scheduleOverridesTheLearningRate() {
        let optimizer = AdamW(config: AdamWConfig(learningRate: 0.1, weightDecay: 0))
        var p: [Float] = [1.0]
        optimizer.update(&p, gradients: [3.0], count: 1, learningRate: 0.01)
        #expect(abs(p[0] - 0.99) < 1e-6, "first step moves by lr·sign(g) when ε is negligible")
    }
}
