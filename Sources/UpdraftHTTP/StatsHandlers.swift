import Foundation
import OpenAPIRuntime
import UpdraftCore

/// Fleet statistics (`updraft stats versions`).
extension APIHandlers {
    func getVersionStats(_ input: Operations.GetVersionStats.Input) async throws -> Operations.GetVersionStats.Output {
        let product = try input.query.product.map { try ProductID(validating: $0) }
        let top = input.query.top ?? 5
        guard (1...100).contains(top) else { throw UpdraftError("invalid_top", "top must be 1 to 100 versions, not \(top).") }
        let devices = try await backend.store.devices()
        let products = product.map { [$0] } ?? Set(devices.compactMap(\.product)).sorted()
        var rows: [Components.Schemas.VersionStats] = []
        for product in products {
            let catalog = try await backend.store.firmwareList(product: product)
            let sequences = Dictionary(catalog.map { ($0.version, $0.sequence) }, uniquingKeysWith: { a, _ in a })
            let d = FleetStatus.versionDistribution(product: product, devices: devices, top: top, sequenceOf: { sequences[$0] })
            rows.append(
                .init(
                    product: product.rawValue, total: d.total, versions: d.top.map { .init(version: $0.version.rawValue, devices: $0.devices, fraction: $0.fraction) },
                    others: d.others, unknown: d.unknown))
        }
        return .ok(.init(body: .json(.init(products: rows))))
    }
}
