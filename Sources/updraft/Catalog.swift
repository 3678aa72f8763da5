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
                verify every manifest with it. Keep the private key off the gateway if you can: only \
                `updraft firmware add` needs it.
                """)
        @OptionGroup var global: GlobalOptions
        @Flag(help: "Replace an existing key (devices holding the old public key will refuse new firmware).")
        var force = false

        static let storeAccess = UpdraftStoreFactory.Access.create

        func run(_ ops: Operations) async throws {
            let made = try ops.generateKeys(force: force)
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
        subcommands: [Add.self, List.self, Show.self, Verify.self])

    struct Add: OperationsCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add an image to the catalog and sign its manifest.",
            discussion: """
                Stores the image by its SHA-256, computes size, SHA-256 and MD5, and signs a manifest \
                (product, version, sequence, size, SHA-256, time) with the release key. The sequence \
                number grows by one per product: devices use it to refuse rollbacks. \
                Versions are immutable: adding the same product and version with other content fails.
                """)
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The image file.") var file: String
        @Option(help: "Product (device model) the image is built for.") var product: String
        @Option(help: "Version: 1-64 letters, digits, '.', '-', '_'.") var version: String

        static let storeAccess = UpdraftStoreFactory.Access.create

        func run(_ ops: Operations) async throws {
            let result = try await ops.addFirmware(file: file, product: product, version: version)
            let fw = result.firmware
            if case .existing = result { print("already in the catalog (same content)") }
            print("firmware: \(fw.id)")
            print("sequence: \(fw.sequence)")
            print("size:     \(fw.size) bytes")
            print("sha256:   \(fw.sha256)")
            print("md5:      \(fw.md5)")
        }
    }

    struct List: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "List the catalog.")
        @OptionGroup var global: GlobalOptions
        @Option(help: "Only this product.") var product: String?

        func run(_ ops: Operations) async throws {
            let product = try product.map { try ProductID(validating: $0) }
            let list = try await ops.store.firmwareList(product: product)
            if list.isEmpty { print("The catalog is empty. Add an image with `updraft firmware add FILE --product P --version V`.") }
            for fw in list {
                print("\(fw.id)\tseq \(fw.sequence)\t\(fw.size) B\t\(fw.sha256.prefix(16))…")
            }
        }
    }

    struct Show: OperationsCommand {
        static let configuration = CommandConfiguration(abstract: "Show a firmware and its verification status.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "Firmware id, PRODUCT@VERSION.") var id: String

        func run(_ ops: Operations) async throws {
            let fw = try await ops.firmware(try FirmwareID(validating: id))
            let verification = try await ops.verification(of: fw.id)
            print("firmware:     \(fw.id)")
            print("sequence:     \(fw.sequence)")
            print("size:         \(fw.size) bytes")
            print("sha256:       \(fw.sha256)")
            print("verification: \(verification.status.rawValue)")
            if let device = verification.verifiedBy { print("verified by:  \(device)") }
            if let release = verification.releaseID { print("verification release: \(release)") }
            if !verification.failedDevices.isEmpty {
                print("failed on:    \(verification.failedDevices.map(\.rawValue).joined(separator: ","))")
            }
            if verification.status != .verified {
                print("Fleet releases need verified firmware: `updraft firmware verify \(fw.id) --devices ID[,ID...]` (or release with --force).")
            }
        }
    }

    struct Verify: OperationsCommand {
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

        func run(_ ops: Operations) async throws {
            let testDevices = try parseList(devices, DeviceID.self, flag: "--devices")
            let release = try await ops.verifyFirmware(try FirmwareID(validating: id), devices: testDevices)
            print("verification release: \(release.id)")
            print("test devices: \(release.staticMembers?.map(\.rawValue).joined(separator: ",") ?? "-")")
            print("Follow it with `updraft release watch \(release.id)`; `updraft firmware show \(id)` tells the result.")
        }
    }
}
