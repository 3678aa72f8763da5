import Foundation
import OpenAPIRuntime
import UpdraftCore

/// The operations of openapi.yaml (generated `APIProtocol`), each one store query or
/// gateway probe. Scopes and errors are handled around them (``ScopeAndProblemMiddleware``).
struct APIHandlers: APIProtocol {
    let backend: HTTPBackend
    let document: OpenAPIDocumentFile
    let metrics: GatewayMetrics

    func getHealth(_ input: Operations.GetHealth.Input) async throws -> Operations.GetHealth.Output {
        .ok(.init(body: .plainText("ok\n")))
    }

    func getReadiness(_ input: Operations.GetReadiness.Input) async throws -> Operations.GetReadiness.Output {
        let checks = await backend.readiness()
        let body = Components.Schemas.Readiness(
            ready: checks.allSatisfy(\.ok), checks: checks.map { .init(name: $0.name, ok: $0.ok, detail: $0.detail) })
        return body.ready ? .ok(.init(body: .json(body))) : .serviceUnavailable(.init(body: .json(body)))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        .ok(.init(body: .plainText(HTTPBody(await metrics.scrape()))))
    }

    func getOpenAPIDocument(_ input: Operations.GetOpenAPIDocument.Input) async throws -> Operations.GetOpenAPIDocument.Output {
        .ok(.init(body: .yaml(HTTPBody(try document.bytes()))))
    }

    func listFirmware(_ input: Operations.ListFirmware.Input) async throws -> Operations.ListFirmware.Output {
        let product = try input.query.product.map { try ProductID(validating: $0) }
        let list = try await backend.store.firmwareList(product: product)
        return .ok(.init(body: .json(.init(firmware: list.map(Components.Schemas.Firmware.init)))))
    }

    func listReleases(_ input: Operations.ListReleases.Input) async throws -> Operations.ListReleases.Output {
        let fleet = try await backend.store.fleetReleases()
        let fleetIDs = Set(fleet.map(\.id))
        var rows = fleet.map(Components.Schemas.Release.init)
        rows += try await backend.store.releases().filter { !fleetIDs.contains($0.id) }.map(Components.Schemas.Release.init)
        rows.sort { ($0.createdAt, $0.id) > ($1.createdAt, $1.id) }
        return .ok(.init(body: .json(.init(releases: rows))))
    }

    func listEvents(_ input: Operations.ListEvents.Input) async throws -> Operations.ListEvents.Output {
        let after = input.query.after ?? 0
        guard after >= 0 else { throw UpdraftError("invalid_after", "after must be 0 or a sequence number, not \(after).") }
        let events = try await backend.store.events(after: after, limit: try Self.limit(input.query.limit))
        return .ok(.init(body: .json(.init(events: events.map(Components.Schemas.Event.init), nextAfter: events.last?.sequence ?? after))))
    }

    func listTokens(_ input: Operations.ListTokens.Input) async throws -> Operations.ListTokens.Output {
        .ok(.init(body: .json(.init(tokens: try await backend.store.tokens().map(Components.Schemas.Token.init)))))
    }

    static func limit(_ value: Int?) throws(UpdraftError) -> Int {
        let limit = value ?? 100
        guard (1...1000).contains(limit) else { throw UpdraftError("invalid_limit", "limit must be 1 to 1000, not \(limit).") }
        return limit
    }
}
