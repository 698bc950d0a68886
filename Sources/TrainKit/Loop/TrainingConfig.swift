import Foundation

/// Learning-rate schedules after warmup (Hugging Face's `lr_scheduler_type`).
public enum LearningRateSchedule: String, Sendable, Codable, CaseIterable {
    case linear, cosine, constant
}

/// Settings every trainer shares (TRL's TrainingArguments, trimmed).
public struct TrainingConfig: Sendable, Codable, Equatable {
    public var epochs = 1
    /// Stop after this many optimiser steps (nil: run all epochs).
    public var maxSteps: Int?
    public var learningRate = 1e-4
    public var schedule = LearningRateSchedule.linear
    /// Linear warmup over this fraction of the steps.
    public var warmupRatio = 0.1
    public var weightDecay = 0.0
    /// Gradients are rescaled when their global L2 norm exceeds this (0: no clipping).
    public var maxGradNorm = 1.0
    /// Examples per micro-batch; `gradientAccumulation` micro-batches make one optimiser step.
    public var batchSize = 4
    public var gradientAccumulation = 1
    /// A micro-batch is split further so no forward pass stacks more tokens than this.
    public var microBatchTokens = 2048
    /// Evaluate every this many steps (0: only at the end).
    public var evalEvery = 0
    /// Save a resumable checkpoint every this many steps (0: never).
    public var checkpointEvery = 10
    public var seed: UInt64 = 0

    public init() {}

    public var examplesPerStep: Int { batchSize * gradientAccumulation }

    /// The learning rate at `step` (1-based) of `total`: linear warmup, then the schedule to 0.
    public func learningRate(step: Int, total: Int) -> Double {
        let warmup = Int((warmupRatio * Double(total)).rounded(.up))
        if step <= warmup && warmup > 0 { return learningRate * Double(step) / Double(warmup) }
        let progress = Double(step - warmup) / Double(max(1, total - warmup))
        switch schedule {
        case .constant: return learningRate
        case .linear: return learningRate * max(0, 1 - progress)
        case .cosine: return learningRate * 0.5 * (1 + cos(.pi * min(1, progress)))
        }
    }
}
