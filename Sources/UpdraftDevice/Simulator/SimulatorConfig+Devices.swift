import Foundation
import UpdraftCore

// The configuration of each simulated device: what both kinds share, then what each
// transport adds.
extension SimulatorConfig {
    /// What device `index` of either kind does: retries, storage and injected faults.
    func referenceDevice<Config: ReferenceDeviceConfig>(_ device: Config, _ index: Int) -> Config {
        var device = device
        device.installedSequence = installedSequence
        device.rebootDelay = rebootDelay
        device.announcesBoot = announcesBoot
        device.storageDirectory = storageDirectory?.appendingPathComponent(device.id.rawValue)
        device.retainInstalledImage = retainInstalledImages
        device.corruptFirstDownload = Self.picks(index, fraction: corruptFraction, phase: 0.999)
        device.downloadsOverHTTP = downloadsOverHTTP
        return device
    }

    /// The ids of the `count` devices: the prefix and a zero-padded index.
    /// - Throws: `UpdraftError` when `idPrefix` makes invalid device ids.
    public func deviceIDs() throws(UpdraftError) -> [DeviceID] {
        let width = max(String(max(count - 1, 0)).count, 4)
        var ids: [DeviceID] = []
        for index in 0..<count {
            let digits = String(index)
            ids.append(try DeviceID(validating: idPrefix + String(repeating: "0", count: max(width - digits.count, 0)) + digits))
        }
        return ids
    }

    func coapDevice(_ index: Int, id: DeviceID) -> CoAPDeviceConfig {
        var device = referenceDevice(
            CoAPDeviceConfig(id: id, product: product, version: version, trustedKeys: trustedKeys, host: coapHost, port: coapPort), index)
        device.blockSize = blockSize
        device.lifetime = coapLifetime
        device.retryDelay = requestTimeout
        if Self.picks(index, fraction: rebootFraction, phase: 0.3) { device.rebootDuringFirstDownloadAfter = rebootAfter }
        return device
    }

    func mqttDevice(_ index: Int, id: DeviceID) -> DeviceConfig {
        var device = referenceDevice(
            DeviceConfig(id: id, product: product, version: version, trustedKeys: trustedKeys, brokerHost: brokerHost, brokerPort: brokerPort),
            index)
        device.password = passwords[id] ?? password
        device.tls = tls
        device.dialect = dialect
        device.chunkSize = chunkSize
        device.windowCount = windowCount
        device.requestTimeout = requestTimeout
        if Self.picks(index, fraction: disconnectFraction, phase: 0.3) { device.dropConnectionAtPercent = disconnectAtPercent }
        return device
    }
}
