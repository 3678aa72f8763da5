import UpdraftCore

/// The stores tests build on, so that switching a test to another store is one line.
package enum TestStores {
    /// An empty store in memory, which passes the same contract as the SQLite one.
    package static func inMemory() -> InMemoryStatusStore { InMemoryStatusStore() }
}

/// ``InMemoryStatusStore`` as a ``StoreFixture``: a fresh store per check.
package struct InMemoryStoreFixture: StoreFixture {
    package let memory: InMemoryStatusStore
    package var store: any StatusStore { memory }

    package init(memory: InMemoryStatusStore = TestStores.inMemory()) {
        self.memory = memory
    }

    package func openAnother() async throws -> any StatusStore { memory.openAnother() }

    /// Runs `body` on a fresh in-memory store (the same shape as the SQLite fixture's `with`).
    package static func with(_ body: (InMemoryStoreFixture) async throws -> Void) async throws {
        try await body(InMemoryStoreFixture())
    }
}
