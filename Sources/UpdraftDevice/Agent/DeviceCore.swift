import Foundation
import Logging
import Synchronization
import UpdraftCore
import UpdraftWire

/// What both reference devices keep and do the same way, whatever carries their messages:
/// the running version and the storage that records it, the boot counter, the offer
/// check, writing the image, and the state others read. Each agent (an actor) owns one and
/// adds only its transport (MQTT topics, CoAP requests).
struct DeviceCore {
    let id: DeviceID
    let product: ProductID
    let behavior: DeviceBehavior
    let logger: Logger
    let published: PublishedDeviceState
    private(set) var version: FirmwareVersion
    private(set) var installedSequence: Int64?
    private(set) var storage: DeviceStorage?
    /// This boot's number, sent in every announcement (see ``BootCounter``).
    private(set) var bootNumber: UInt64?
    /// The last job that ended here: offers that still carry it are ignored.
    var endedJob: JobID?
    /// The installed image when there is no storage directory (and `retainInstalledImage`).
    private(set) var installedImage: [UInt8]?

    init(config: some ReferenceDeviceConfig, logger: Logger) {
        var logger = logger
        logger[metadataKey: "device.id"] = "\(config.id)"
        self.id = config.id
        self.product = config.product
        self.behavior = config.behavior
        self.logger = logger
        self.version = config.version
        self.installedSequence = config.installedSequence
        self.published = PublishedDeviceState(DeviceState(version: config.version, installedSequence: config.installedSequence))
    }

    func update(_ body: (inout DeviceState) -> Void) { published.update(body) }

    /// Opens the storage directory, if any, and runs the version it records as installed.
    /// Throws only when the directory cannot be created.
    mutating func openStorage() throws {
        guard let directory = behavior.storageDirectory else { return }
        let storage = try DeviceStorage(directory: directory)
        self.storage = storage
        if let installed = storage.installed() {
            version = installed.version
            installedSequence = installed.sequence
            update {
                $0.version = installed.version
                $0.installedSequence = installed.sequence
            }
        }
    }

    mutating func boot() { bootNumber = BootCounter.next(after: bootNumber, storage: storage) }

    /// The announcement of this boot; `lifetime` in seconds (CoAP).
    func announcement(lifetime: Int? = nil) -> AnnounceBody {
        AnnounceBody(
            product: product, version: version, acceptsUpdates: behavior.acceptsUpdates, lifetime: lifetime,
            boot: behavior.announcesBoot ? bootNumber : nil)
    }

    private var offerCheck: OfferCheck {
        OfferCheck(
            trustedKeys: behavior.trustedKeys, product: product, installedSequence: installedSequence,
            allowRollback: behavior.allowRollback, maxImageBytes: behavior.maxImageBytes)
    }

    /// The manifest of an offer signed by a trusted key, or `nil`: then the offer is
    /// ignored, never answered (whoever can write the job topic must not fail jobs), and
    /// counted in ``DeviceState/ignoredOffers``.
    func authentic(_ offer: JobOffer) -> Manifest? {
        do {
            return try offerCheck.authentic(offer)
        } catch {
            ignored(offer: "\(offer.job)", error)
            return nil
        }
    }

    /// Counts and logs an offer this device cannot trust or read.
    func ignored(offer job: String?, _ error: UpdraftError) {
        logger.warning(
            "offer ignored", metadata: ["job.id": "\(job ?? "-")", "error.code": "\(error.code)", "error.message": "\(error.message)"])
        update { $0.ignoredOffers += 1 }
    }

    /// Why this device refuses a genuine manifest (reported `rejected`), or `nil`.
    func refusal(of manifest: Manifest, job: JobID) -> UpdraftError? {
        do {
            try offerCheck.acceptable(manifest)
            return nil
        } catch {
            logger.warning(
                "offer rejected", metadata: ["job.id": "\(job)", "error.code": "\(error.code)", "error.message": "\(error.message)"])
            return error
        }
    }

    /// Writes a verified image (storage) or keeps it (memory).
    mutating func install(_ image: [UInt8], _ manifest: Manifest) throws {
        let kept = try ImageInstaller(storage: storage, retainImage: behavior.retainInstalledImage).install(image, manifest)
        if let kept { installedImage = kept }
    }

    func savePartial(_ download: ImageDownload, sha256: String) {
        guard let storage else { return }
        do {
            try storage.savePartial(job: download.job, sha256: sha256, image: download.image, bytes: download.contiguousBytes)
        } catch {
            logger.warning("cannot save the partial download", metadata: ["error": "\(error)"])
        }
    }

    /// After the reboot delay: a new boot, running what was installed, if anything.
    mutating func rebooted(into installed: InstalledUpdate?) {
        boot()
        guard let installed else { return }
        version = installed.version
        installedSequence = installed.sequence
        update {
            $0.version = installed.version
            $0.installedSequence = installed.sequence
            $0.job = nil
        }
    }
}

/// Installed and waiting for the reboot.
struct InstalledUpdate: Sendable {
    var job: JobID
    var version: FirmwareVersion
    var sequence: Int64
}

/// A device's ``DeviceState``, written by its agent and read from any thread.
final class PublishedDeviceState: Sendable {
    private let state: Mutex<DeviceState>
    init(_ state: DeviceState) { self.state = Mutex(state) }
    var value: DeviceState { state.withLock { $0 } }
    func update(_ body: (inout DeviceState) -> Void) { state.withLock { body(&$0) } }
}
