// swift-tools-version: 6.1
import PackageDescription

// Module layout (dependencies point one way, see README "Architecture"):
//   updraft (CLI) -> UpdraftApp -> UpdraftMQTT -> Mosquitto -> CMosquitto
//                               -> UpdraftStore (SQLite)
//                               -> UpdraftCore (pure domain, no C/SQL/networking)
//   UpdraftDevice (reference device, simulator) -> UpdraftMQTT (wire codec), Mosquitto
let package = Package(
    name: "Updraft",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "updraft", targets: ["updraft"]),
        .library(name: "UpdraftDevice", targets: ["UpdraftDevice"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: [.defaults, "YAML"]),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
        // Already in the graph through swift-configuration's YAML trait; read directly to
        // find configuration keys this build does not know.
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // What the C-library wrappers share: the wake queue into a loop thread, and the
        // one-shot completion a loop thread hands back to a task.
        .target(name: "LoopSupport"),
        // vfork + prctl(PR_SET_PDEATHSIG) + exec: the managed broker dies with its gateway.
        // posix_spawn cannot set a parent-death signal, and Swift cannot run code between
        // vfork and exec.
        .target(name: "CChildProcess"),
        // C surface of libmosquitto: module map + shims only.
        .systemLibrary(
            name: "CMosquitto",
            pkgConfig: "libmosquitto",
            providers: [.apt(["libmosquitto-dev"])]
        ),
        // Async Swift API over libmosquitto. Knows MQTT, nothing of firmware.
        .target(
            name: "Mosquitto",
            dependencies: [
                "CMosquitto",
                "LoopSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // C surface of libcoap 4.3.1 (OpenSSL DTLS): module map + shims only.
        .systemLibrary(
            name: "CCoAP",
            pkgConfig: "libcoap-3-openssl",
            providers: [.apt(["libcoap3-dev"])]
        ),
        // CoAP server and client over libcoap, one loop thread per context. Knows CoAP, nothing of firmware.
        .target(
            name: "CoAP",
            dependencies: [
                "CCoAP",
                "LoopSupport",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The domain: devices, firmware, manifests, jobs, events and the ports.
        .target(
            name: "UpdraftCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Status store: SQLite through GRDB.
        .target(
            name: "UpdraftStore",
            dependencies: [
                "UpdraftCore",
                "UpdraftSettings",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Configuration keys read with their bounds, every key remembered with its default
        // (unknown keys are reported; Config/updraft.yaml is checked against them). Each
        // module's settings type reads its own keys through it (`init(reader:)`).
        .target(name: "UpdraftSettings", dependencies: [
            "UpdraftCore", .product(name: "Configuration", package: "swift-configuration"), .product(name: "Yams", package: "Yams"),
        ]),
        // JSON bodies shared by every protocol adapter and the reference device.
        .target(
            name: "UpdraftWire",
            dependencies: ["UpdraftCore"]
        ),
        // MQTT adapter: device wire protocol codec and the gateway's MQTT service.
        .target(
            name: "UpdraftMQTT",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                "UpdraftSettings",
                "Mosquitto",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // CoAP adapter: the constrained devices' API over the same engine.
        .target(
            name: "UpdraftCoAP",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                "UpdraftSettings",
                "CoAP",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Reference device implementation and fleet simulator.
        .target(
            name: "UpdraftDevice",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                "UpdraftMQTT",
                "Mosquitto",
                "CoAP",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Composition root: configuration, broker supervision, services.
        .target(
            name: "UpdraftApp",
            dependencies: [
                "UpdraftCore",
                "UpdraftCoAP",
                "CoAP",
                "UpdraftStore",
                "UpdraftMQTT",
                "UpdraftSettings",
                "UpdraftDevice",
                "Mosquitto",
                "CChildProcess",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "updraft",
            dependencies: [
                "UpdraftApp",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "UpdraftCoreTests", dependencies: ["UpdraftCore"]),
        .testTarget(
            name: "UpdraftStoreTests",
            dependencies: [
                "UpdraftStore", "UpdraftCore", .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto"]),
        .testTarget(name: "CoAPTests", dependencies: ["CoAP"]),
        .testTarget(name: "UpdraftMQTTTests", dependencies: ["UpdraftMQTT", "UpdraftCore"]),
        .testTarget(
            name: "UpdraftIntegrationTests",
            dependencies: [
                "UpdraftApp", "UpdraftCore", "UpdraftStore", "UpdraftMQTT", "UpdraftDevice", "Mosquitto", "CoAP",
                "UpdraftSettings", "UpdraftCoAP",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            // Peers/: scripts run by non-Swift peers (aiocoap), not sources of the target.
            exclude: ["Peers"]
        ),
    ]
)
