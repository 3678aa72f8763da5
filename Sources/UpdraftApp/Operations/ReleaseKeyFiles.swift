import Foundation
import UpdraftCore

/// The release key files. The private key lives on the signing machine (or on a laptop
/// that does everything), its public half beside it as `.pub`; a gateway keeps only
/// public keys: the `.pub` beside `keys.signing_key` and every `*.pub` in `keys.trusted_dir`.
/// Each file holds one key in base64 on one line.
public struct ReleaseKeyFiles: Sendable {
    public var signingKeyPath: String
    public var trustedDirectory: String

    public init(signingKeyPath: String, trustedDirectory: String) {
        (self.signingKeyPath, self.trustedDirectory) = (signingKeyPath, trustedDirectory)
    }

    public init(_ configuration: UpdraftConfiguration) {
        self.init(signingKeyPath: configuration.resolvedSigningKeyPath, trustedDirectory: configuration.resolvedTrustedKeysDirectory)
    }

    public static func publicKeyPath(for privatePath: String) -> String {
        (privatePath as NSString).deletingPathExtension + ".pub"
    }

    public var publicKeyPath: String { Self.publicKeyPath(for: signingKeyPath) }

    /// Makes a new Ed25519 key pair; refuses to overwrite unless `force`.
    public func generate(force: Bool) throws -> (privatePath: String, publicPath: String, keyID: String) {
        if FileManager.default.fileExists(atPath: signingKeyPath) && !force {
            throw UpdraftError("key_exists", "A release key already exists at \(signingKeyPath). Firmware signed with it would no longer verify on devices holding its public key; pass --force only if you mean to replace it.")
        }
        let key = ReleaseSigningKey()
        try FileManager.default.createDirectory(
            atPath: (signingKeyPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        guard FileManager.default.createFile(
            atPath: signingKeyPath, contents: Data((Data(key.rawRepresentation).base64EncodedString() + "\n").utf8),
            attributes: [.posixPermissions: 0o600])
        else {
            throw UpdraftError(
                "key_write_failed", "Cannot write the signing key to \(signingKeyPath); check that the folder is writable.")
        }
        try (Data(key.publicKey.rawRepresentation).base64EncodedString() + "\n").write(
            toFile: publicKeyPath, atomically: true, encoding: .utf8)
        return (signingKeyPath, publicKeyPath, key.publicKey.keyID)
    }

    public func signingKey() throws -> ReleaseSigningKey {
        guard let raw = Self.base64(at: signingKeyPath) else {
            throw UpdraftError("key_missing", "No release signing key at \(signingKeyPath). Create one with `updraft keys generate`.")
        }
        return try ReleaseSigningKey(rawRepresentation: raw)
    }

    public static func publicKey(at path: String) throws -> ReleaseVerifyingKey {
        guard let raw = base64(at: path) else {
            throw UpdraftError("key_missing", "Cannot read a base64 release public key from \(path). Copy the signing machine's release.pub there.")
        }
        do {
            return try ReleaseVerifyingKey(rawRepresentation: raw)
        } catch {
            throw UpdraftError(error.code, "\(path): \(error.message)")
        }
    }

    /// The public keys this machine trusts: the signing key's (from its `.pub`, else from
    /// the private key) and those in the trusted folder. Throws `no_trusted_keys` when none.
    public func trustedKeys() throws -> TrustedReleaseKeys {
        var keys: [ReleaseVerifyingKey] = []
        if FileManager.default.fileExists(atPath: publicKeyPath) {
            keys.append(try Self.publicKey(at: publicKeyPath))
        } else if FileManager.default.fileExists(atPath: signingKeyPath) {
            keys.append(try signingKey().publicKey)
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: trustedDirectory)) ?? []
        for name in names.sorted() where name.hasSuffix(".pub") {
            keys.append(try Self.publicKey(at: (trustedDirectory as NSString).appendingPathComponent(name)))
        }
        guard !keys.isEmpty else {
            throw UpdraftError(
                "no_trusted_keys",
                "No trusted release key: neither \(publicKeyPath) nor any *.pub in \(trustedDirectory). Copy the signing machine's release.pub into \(trustedDirectory), or run `updraft keys generate` to sign on this machine.")
        }
        return TrustedReleaseKeys(keys)
    }

    private static func base64(at path: String) -> [UInt8]? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let raw = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return nil }
        return Array(raw)
    }
}
