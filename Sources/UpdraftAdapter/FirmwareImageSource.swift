import UpdraftCore

/// Where adapters get image bytes: memory, never the database per request. The image was
/// hashed when it entered the catalog (``Firmware/sha256``, ``Firmware/size``); serving it
/// hashes nothing.
public protocol FirmwareImageSource: Sendable {
    /// The whole image. Throws an ``UpdraftError`` a device may be told
    /// (`firmware_image_missing`, `firmware_image_corrupt`), or anything else.
    func image(for firmware: Firmware) throws -> [UInt8]
}
