// swift-tools-version: 6.1
import PackageDescription

// `make fuzz` sets UPDRAFT_FUZZ_BUILD: SwiftPM builds the tool of every build plugin in the
// package with the -Xswiftc flags, even for a product that uses no plugin, and the OpenAPI
// generator's link fails with -sanitize=fuzzer,address. `updraft-fuzz` does not depend on
// UpdraftHTTP (FuzzBuildGraphTests), so its build needs no generated code: the plugin is off.
let fuzzBuild = Context.environment["UPDRAFT_FUZZ_BUILD"] != nil

// Module layout (dependencies point one way; README "Architecture" and "Where a change goes"):
//
//   updraft (CLI) -> UpdraftTools (demo, benches, LocalStack) -> UpdraftApp (composition root)
//   UpdraftApp: configuration, ServiceGroup, managed broker, and the DeviceCommandRouter
//     -> UpdraftMQTT (MQTT adapter)  -> Mosquitto -> CMosquitto (libmosquitto)
//     -> UpdraftCoAP (CoAP adapter)  -> CoAP      -> CCoAP      (libcoap 4.3.1)
//          both -> UpdraftAdapter: the seam. The engine returns DeviceCommands; the router
//                  delivers each to the DeviceAdapter of its device's transport; DevicePipeline
//                  is the steps every adapter shares (identify, decode, refuse, count, images).
//          both -> UpdraftWire: JSON bodies and WireDialect (topic layout + codec + broker rules).
//     -> UpdraftStore (SQLite via GRDB; literal, forward-only migrations)
//     -> UpdraftSettings (ConfigKeys: every key validated and remembered with its default;
//                         each module's settings type reads its own keys with init(reader:))
//     -> UpdraftCore (pure domain: engine, state machines, the store port; no C/SQL/networking)
//   Mosquitto, CoAP -> LoopSupport -> CLoopSupport (eventfd, thread names, fd walks)
//   UpdraftApp, UpdraftCoAP (its PSKFile) -> PrivateFiles (0600 files replaced whole under a lock)
//   UpdraftDevice (reference devices, simulator) -> UpdraftWire, Mosquitto, CoAP (never an adapter)
//   UpdraftTestSupport (Tests/, test targets only, like HummingbirdTesting): eventually, temporary
//     directories, spawned tools, the store contract and an in-memory store.
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
        // The fleet PKI (CA, broker and device certificates) made in-process: UpdraftApp.
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        // The HTTP API (UpdraftHTTP): Hummingbird, bearer tokens, server code generated from
        // the OpenAPI document, Prometheus metrics. AsyncHTTPClient posts webhooks, is the reference
        // device's HTTP download client and the tests' client.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-openapi-generator", from: "1.14.3"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // The CLI as an API client (`--server URL --token T`): the client generated from
        // openapi.yaml over AsyncHTTPClient. UpdraftApp only; never in the fuzz build.
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // NIOHTTPTypes: the HTTP parts between Hummingbird and NIO, for zero-copy downloads.
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
    ],
    targets: [
        // What the C-library wrappers' event loops need from C: the wake eventfd, thread
        // names (prctl), and walking the descriptors of a C library's epoll set.
        .target(name: "CLoopSupport"),
        // What the C-library wrappers share: the loop thread and its handle (wake queue,
        // loop-thread checks), and the one-shot completion a loop thread hands back to a task.
        .target(name: "LoopSupport", dependencies: ["CLoopSupport"]),
        // vfork + prctl(PR_SET_PDEATHSIG) + exec: the managed broker dies with its gateway.
        // posix_spawn cannot set a parent-death signal, and Swift cannot run code between
        // vfork and exec.
        .target(name: "CChildProcess"),
        // Files only this user may read (passwords, pre-shared keys), replaced whole under a lock.
        .target(name: "PrivateFiles", dependencies: ["UpdraftCore"]),
        // Free loopback ports, one list per process for the demo, the benches and the tests.
        .target(name: "LoopbackPorts"),
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
                "CLoopSupport",
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
        // The wire layer shared by the adapters and the reference device: JSON bodies, and
        // the publish/subscribe dialects (WireDialect: topic layout, codec, broker rules).
        .target(
            name: "UpdraftWire",
            dependencies: ["UpdraftCore"]
        ),
        // The seam every protocol adapter plugs into: the DeviceAdapter protocol, the
        // router of the engine's commands, the shared request pipeline, counters and the
        // image source. A new adapter (HTTP downloads) depends on this, not on another adapter.
        .target(
            name: "UpdraftAdapter",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // MQTT adapter: device wire protocol codec and the gateway's MQTT service.
        .target(
            name: "UpdraftMQTT",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                "UpdraftAdapter",
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
                "UpdraftAdapter",
                "UpdraftSettings",
                "CoAP",
                "PrivateFiles",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Reference device implementation and fleet simulator.
        .target(
            name: "UpdraftDevice",
            dependencies: [
                "UpdraftCore",
                "UpdraftWire",
                "Mosquitto",
                "CoAP",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                // `--download http`: the image by the offer's signed URL, with Range resume.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The HTTP API: health, metrics, bearer tokens and the /v1 operator endpoints, server
        // code generated from openapi.yaml. Knows the store port and what the gateway hands it
        // (HTTPBackend: readiness, metrics), never an adapter.
        .target(
            name: "UpdraftHTTP",
            dependencies: [
                "UpdraftCore",
                "UpdraftSettings",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("openapi.yaml")],
            // The generated code imports with explicit access levels; the other files'
            // plain imports must then be internal too (public API says `public import`).
            swiftSettings: [.enableUpcomingFeature("InternalImportsByDefault")],
            plugins: fuzzBuild ? [] : [.plugin(name: "OpenAPIGenerator", package: "swift-openapi-generator")]
        ),
        // Composition root: configuration, broker supervision, services.
        .target(
            name: "UpdraftApp",
            dependencies: [
                "UpdraftCore",
                "UpdraftAdapter",
                "UpdraftCoAP",
                "UpdraftHTTP",
                "CoAP",
                "UpdraftStore",
                "UpdraftWire",
                "UpdraftMQTT",
                "UpdraftSettings",
                "Mosquitto",
                "CChildProcess",
                "LoopbackPorts",
                "PrivateFiles",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // What runs a whole Updraft in one process for people and benches: `updraft demo`,
        // `updraft bench`, and LocalStack (also the integration tests' harness).
        .target(
            name: "UpdraftTools",
            dependencies: [
                "UpdraftApp", "UpdraftCore", "UpdraftWire", "UpdraftMQTT", "UpdraftDevice", "Mosquitto", "CoAP", "LoopbackPorts",
                .product(name: "Logging", package: "swift-log"),
                // `updraft bench sse`: the event stream's subscribers.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "updraft",
            dependencies: [
                "UpdraftApp",
                "UpdraftTools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Test support shared by every test target (not a test target itself: SwiftPM
        // lets test targets depend only on regular targets). Under Tests/, as it ships nowhere.
        .target(
            name: "UpdraftTestSupport",
            dependencies: [
                "UpdraftCore", "LoopbackPorts", .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                // The webhook receivers of the tests.
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/UpdraftTestSupport"
        ),
        // Fuzzing (README "Fuzzing"): the libFuzzer harnesses of every parser of network or
        // file bytes, `updraft-fuzz` (libFuzzer when built with -DUPDRAFT_FUZZ by `make fuzz`,
        // else a replayer of inputs), and the test replaying the committed corpus. Never
        // UpdraftApp or UpdraftHTTP: the sanitizer flags must not reach the OpenAPI generator
        // plugin (its link fails), and the fuzz build stays small.
        .target(
            name: "UpdraftFuzz",
            dependencies: [
                "UpdraftWire", "UpdraftCore", "UpdraftDevice", "UpdraftCoAP", "UpdraftMQTT", "UpdraftSettings", "CoAP", "CCoAP",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/UpdraftFuzz", exclude: ["Corpus"]
        ),
        .executableTarget(name: "updraft-fuzz", dependencies: ["UpdraftFuzz"], path: "Tests/UpdraftFuzzMain"),
        .testTarget(name: "UpdraftFuzzTests", dependencies: ["UpdraftFuzz"]),
        .testTarget(name: "UpdraftCoreTests", dependencies: ["UpdraftCore"]),
        .testTarget(
            name: "UpdraftStoreTests",
            dependencies: [
                "UpdraftStore", "UpdraftCore", "UpdraftAdapter", "UpdraftTestSupport", .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        .testTarget(name: "MosquittoTests", dependencies: ["Mosquitto", "UpdraftTestSupport", "LoopbackPorts"]),
        .testTarget(name: "CoAPTests", dependencies: ["CoAP", "UpdraftTestSupport", "LoopbackPorts"]),
        .testTarget(name: "UpdraftWireTests", dependencies: ["UpdraftWire", "UpdraftCore"]),
        .testTarget(name: "UpdraftMQTTTests", dependencies: ["UpdraftMQTT", "UpdraftWire", "UpdraftCore", "UpdraftTestSupport"]),
        // The HTTP API on a real server (free loopback port, SQLite store) with a real client.
        .testTarget(
            name: "UpdraftHTTPTests",
            dependencies: [
                "UpdraftHTTP", "UpdraftStore", "UpdraftCore", "UpdraftTestSupport", "LoopbackPorts",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "UpdraftIntegrationTests",
            dependencies: [
                "UpdraftApp", "UpdraftTools", "UpdraftCore", "UpdraftStore", "UpdraftWire", "UpdraftMQTT", "UpdraftDevice",
                "Mosquitto", "CoAP", "UpdraftTestSupport", "LoopbackPorts",
                "UpdraftSettings", "UpdraftCoAP", "UpdraftHTTP",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            // Peers/: scripts run by non-Swift peers (aiocoap), not sources of the target.
            exclude: ["Peers"]
        ),
    ]
)
