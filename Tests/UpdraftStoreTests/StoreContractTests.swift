import Testing
import UpdraftCore
import UpdraftTestSupport

/// Every store implementation, for the contract checks.
enum StoreImplementation: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case inMemory

    var testDescription: String { rawValue }

    func withFixture(_ body: (any StoreFixture) async throws -> Void) async throws {
        switch self {
        case .sqlite: try await SQLiteFixture.with { try await body($0) }
        case .inMemory: try await InMemoryStoreFixture.with { try await body($0) }
        }
    }
}

@Suite("StatusStore contract")
struct StoreContractTests {
    @Test("satisfies the store contract", arguments: StoreImplementation.allCases, StoreContract.checks)
    func contract(_ implementation: StoreImplementation, _ check: StoreContractCheck) async throws {
        try await implementation.withFixture { fixture in try await check.run(fixture) }
    }
}
