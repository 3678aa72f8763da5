import ArgumentParser
import Foundation
import UpdraftApp
import UpdraftCore

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the release signing key.",
        subcommands: [Generate.self])

    struct Generate: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an Ed25519 release signing key pair.",
            discussion: """
                Writes the private key to keys.signing_key (default <data_dir>/keys/release.key, mode 0600) \
                and the public key next to it (release.pub). Put the public key on your devices: they \
                verify every manifest with it. Keep the private key off the gateway: sign on the signing \
                machine with `updraft firmware sign`, copy release.pub into the gateway's keys.trusted_dir, \
                and add with `updraft firmware add IMAGE --manifest M --signature S`.
                """)
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Replace an existing key (devices holding the old public key will refuse new firmware).")
        var force = false
        @Option(help: "Write the private key here instead (a signing machine: no data directory, no store); the public key goes beside it as .pub.")
        var output: String?

        static let storeAccess = UpdraftStoreFactory.Access.create

        func run() async throws {
            guard let output else {
                return try await userFacing { try await run(try await global.operations(Self.storeAccess)) }
            }
            try await userFacing { show(try ReleaseKeyFiles(signingKeyPath: output, trustedDirectory: "").generate(force: force)) }
        }

        func run(_ ops: Operations) async throws { show(try ops.generateKeys(force: force)) }

        func show(_ made: (privatePath: String, publicPath: String, keyID: String)) {
            print("private key: \(made.privatePath)")
            print("public key:  \(made.publicPath)")
            print("key id:      \(made.keyID)")
        }
    }
}

struct FirmwareCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "firmware",
        abstract: "Manage the firmware catalog.",
        subcommands: [Add.self, Sign.self, List.self, Show.self, Verify.self, Delete.self])

    struct Add: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an image to the catalog with its signed manifest.",
            discussion: """
                Stores the image by its SHA-256 and computes size, SHA-256 and MD5. With --manifest and \
                --signature (from `updraft firmware sign` on the signing machine) the manifest must verify \
                with a trusted public key (keys.trusted_dir, or the .pub beside keys.signing_key) and \
                describe this image; no private key is needed. With --product and --version instead, the \
                manifest is signed here with the local release key; its sequence grows by one per product. \
                Devices use the sequence to refuse rollbacks. Versions are immutable: adding the same \
                product and version with other content fails.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The image file.") var file: String
        @Option(help: "Product (device model) the image is built for; signs here.") var product: String?
        @Option(help: "Version: 1-64 letters, digits, '.', '-', '_'; signs here.") var version: String?
        @Option(help: "The signed manifest file from `updraft firmware sign`.") var manifest: String?
        @Option(help: "Its signature file (base64).") var signature: String?

        static let storeAccess = UpdraftStoreFactory.Access.create

        func validate() throws {
            let local = product != nil || version != nil
            let signed = manifest != nil || signature != nil
            if local == signed || (local && (product == nil || version == nil)) || (signed && (manifest == nil || signature == nil)) {
                throw ValidationError("Pass either --manifest and --signature (signed elsewhere) or --product and --version (sign here).")
            }
        }

        func run(_ fleet: any FleetClient) async throws {
            let signing: FirmwareSigning
            if let manifest, let signature {
                let payload = try Array(Data(contentsOf: URL(fileURLWithPath: manifest)))
                let text = try String(contentsOfFile: signature, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let raw = Data(base64Encoded: text) else {
                    throw UpdraftError("signature_encoding", "\(signature) is not a base64 signature. Pass the .sig file `updraft firmware sign` wrote.")
                }
                signing = .signed(manifest: payload, signature: Array(raw))
            } else {
                signing = .here(product: product ?? "", version: version ?? "")
            }
            // Uploads (--server) draw a bar on a terminal.
            let bar = isatty(STDERR_FILENO) == 1 ? ProgressLine() : nil
            let (fw, existing) = try await fleet.addFirmware(file: file, signing: signing) { sent, size in
                bar?.update(size > 0 ? Double(sent) / Double(size) : 1, "\(sent / 1024) of \(size / 1024) KiB sent")
            }
            if fleet is RemoteFleet { bar?.finish() }
            if existing { print("already in the catalog (same content)") }
            print("firmware: \(fw.id)")
            print("sequence: \(fw.sequence)")
            print("size:     \(fw.size) bytes")
            print("sha256:   \(fw.sha256)")
            if let md5 = fw.md5 { print("md5:      \(md5)") }
        }
    }

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign an image's manifest on the signing machine (no gateway, no data directory).",
            discussion: """
                Writes OUTPUT.manifest (the exact signed bytes) and OUTPUT.sig (base64 Ed25519 signature); \
                OUTPUT defaults to the image path. Take both to the gateway with the image: \
                `updraft firmware add IMAGE --manifest IMAGE.manifest --signature IMAGE.sig`.
                """)
        @Argument(help: "The image file.") var file: String
        @Option(help: "Product (device model) the image is built for.") var product: String
        @Option(help: "Version: 1-64 letters, digits, '.', '-', '_'.") var version: String
        @Option(help: "The private key file from `updraft keys generate`.") var key: String
        @Option(help: "Anti-rollback sequence, above every earlier one of the product (default: the time in seconds since 1970).")
        var sequence: Int64?
        @Option(help: "Prefix of the two files written (default: the image path).") var output: String?

        func run() async throws {
            try await userFacing {
                let made = try OfflineSigner.sign(image: file, product: product, version: version, sequence: sequence, keyPath: key)
                let paths = try OfflineSigner.write(made.signed, to: output ?? file)
                print("manifest:  \(paths.manifest)")
                print("signature: \(paths.signature)")
                print("key id:    \(made.manifest.keyID ?? "-")")
                print("sequence:  \(made.manifest.sequence)")
            }
        }
    }

    struct List: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "List the catalog.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this product.") var product: String?
        @Flag(help: "Print a JSON array (fields as `firmware show --json`).") var json = false

        func run(_ fleet: any FleetClient) async throws {
            let product = try product.map { try ProductID(validating: $0) }
            let list = try await fleet.firmwareList(product: product)
            if json { return print(try jsonText(list)) }
            if !list.isEmpty { print("FIRMWARE\tSEQUENCE\tSIZE\tSHA256") }
            if list.isEmpty { print("The catalog is empty. Add an image with `updraft firmware add FILE --product P --version V`.") }
            for fw in list {
                print("\(fw.id)\tseq \(fw.sequence)\t\(fw.size) B\t\(fw.sha256.prefix(16))…")
            }
        }
    }

    struct Show: FleetCommand {
        static let configuration = CommandConfiguration(abstract: "Show a firmware and its verification status.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Firmware id, PRODUCT@VERSION.") var id: String
        @Flag(help: "Print JSON: {id, product, version, sequence, size, sha256, md5, created_at, verification, verified_by, verification_release, failed_devices}.")
        var json = false

        func run(_ fleet: any FleetClient) async throws {
            let fw = try await fleet.firmware(try FirmwareID(validating: id))
            if json { return print(try jsonText(fw)) }
            print("firmware:     \(fw.id)")
            print("sequence:     \(fw.sequence)")
            print("size:         \(fw.size) bytes")
            print("sha256:       \(fw.sha256)")
            print("verification: \(fw.verification)")
            if let device = fw.verifiedBy { print("verified by:  \(device)") }
            if let release = fw.verificationRelease { print("verification release: \(release)") }
            if let failed = fw.failedDevices, !failed.isEmpty { print("failed on:    \(failed.joined(separator: ","))") }
            if fw.verification != VerificationStatus.verified.rawValue {
                print("Fleet releases need verified firmware: `updraft firmware verify \(fw.id) --devices ID[,ID...]` (or release with --force).")
            }
        }
    }

    struct Verify: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a firmware on test devices before releasing it to the fleet.",
            discussion: """
                Creates a verification release to the named devices (development devices included). \
                The firmware becomes verified as soon as one device installs it and comes back on it, \
                failed if every test device fails. Fleet releases of firmware that is not verified are \
                refused unless forced. Follow it with `updraft release watch RELEASE`.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Firmware id, PRODUCT@VERSION.") var id: String
        @Option(help: "Test devices, comma-separated.") var devices: String

        func run(_ fleet: any FleetClient) async throws {
            let testDevices = try parseList(devices, DeviceID.self, flag: "--devices")
            let release = try await fleet.verifyFirmware(try FirmwareID(validating: id), devices: testDevices)
            print("verification release: \(release.release)")
            print("test devices: \(release.devices?.joined(separator: ",") ?? "-")")
            print("Follow it with `updraft release watch \(release.release)`; `updraft firmware show \(id)` tells the result.")
        }
    }

    struct Delete: FleetCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a firmware that no release uses (one added by mistake).",
            discussion: """
                Refused (firmware_in_use) while any release, lock or verification names it: those are the \
                record of what devices were sent, so that firmware stays. The image file goes too unless \
                another firmware has the same content. A firmware.deleted event records who did it.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Firmware id, PRODUCT@VERSION.") var id: String

        func run(_ fleet: any FleetClient) async throws {
            let fw = try await fleet.deleteFirmware(try FirmwareID(validating: id))
            print("firmware \(fw.id): deleted (sequence \(fw.sequence), sha256 \(fw.sha256.prefix(16))…)")
        }
    }
}
