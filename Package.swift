// swift-tools-version:6.0
import PackageDescription

/// AVX2/FMA for Swift SIMD types in the numeric core (see DESIGN.md § Performance).
let simdFlags: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-mavx2", "-Xcc", "-mfma"])]

let package = Package(
    name: "Precept",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "precept", targets: ["precept"]),
        .library(name: "PipelineKit", targets: ["PipelineKit"]),
        .library(name: "ModelKit", targets: ["ModelKit"]),
        .library(name: "TensorKit", targets: ["TensorKit"]),
        .library(name: "TrainKit", targets: ["TrainKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        // The browser review app's HTTP server (`precept review`): BSD sockets, no SwiftNIO.
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
    ],
    targets: [
        // OpenBLAS's cblas.h (apt: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // libcurl's easy interface for the OpenAI-compatible backend (apt: libcurl4-openssl-dev):
        // URLSession on Linux keeps a core busy while requests wait (measured: 1.8 s of CPU for
        // four requests waiting 3 s).
        .target(
            name: "CCurl",
            linkerSettings: [.linkedLibrary("curl")]
        ),
        // Quantized matrix-vector kernels (AVX2/FMA/F16C intrinsics) on GGUF block formats.
        .target(
            name: "CQuant",
            cSettings: [.unsafeFlags(["-O3", "-mavx2", "-mfma", "-mf16c"])]
        ),
        .target(
            name: "TensorKit",
            dependencies: ["CBLAS", "CQuant"],
            swiftSettings: simdFlags
        ),
        .target(
            name: "ModelKit",
            dependencies: ["TensorKit", "CQuant"],
            swiftSettings: simdFlags
        ),
        .target(
            name: "TrainKit",
            dependencies: ["TensorKit", "ModelKit", "CQuant"],
            swiftSettings: simdFlags
        ),
        .target(
            name: "PipelineKit",
            dependencies: [
                "CCurl",
                "TensorKit",
                "ModelKit",
                "TrainKit",
                // Only for its CYaml target (LibYAML's event parser, read in YAMLDocument.swift).
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .executableTarget(
            name: "precept",
            dependencies: [
                "PipelineKit",
                "CQuant",
                "TrainKit",
                "ModelKit",
                "TensorKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "FlyingFox", package: "FlyingFox"),
                .product(name: "FlyingSocks", package: "FlyingFox"),
            ]
        ),
        // Tiny random-weight GGUF models shared by the test targets.
        .target(name: "TestSupport", dependencies: ["ModelKit"], path: "Tests/TestSupport"),
        .testTarget(name: "TensorKitTests", dependencies: ["TensorKit"]),
        .testTarget(name: "TrainKitTests", dependencies: ["TrainKit", "TensorKit", "ModelKit", "TestSupport"]),
        .testTarget(name: "ModelKitTests", dependencies: ["ModelKit", "TensorKit", "CQuant", "TestSupport"], exclude: ["Fixtures"]),
        // Scripted backends, run fixtures, a fault-injecting HTTP server and the CLI runner, shared by the two test targets below.
        .target(name: "PipelineTestSupport", dependencies: ["PipelineKit", "ModelKit", "TestSupport"], path: "Tests/PipelineTestSupport"),
        // The library through its API (many also run `precept`, which the dependency builds).
        .testTarget(name: "PipelineKitTests", dependencies: ["PipelineKit", "precept", "TestSupport", "PipelineTestSupport", "TrainKit", "ModelKit"],
                    exclude: ["Fixtures"]),
        // The command-line interface: each command's output, exit status and error messages.
        .testTarget(name: "preceptTests", dependencies: ["precept", "PipelineKit", "TestSupport", "PipelineTestSupport", "ModelKit"],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v5]
)
