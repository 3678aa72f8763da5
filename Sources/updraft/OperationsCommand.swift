import ArgumentParser
import UpdraftApp

/// A command that works on the data directory through `Operations`. What each of them
/// does around its work, open the store and turn errors into one line for the user,
/// is here once.
protocol OperationsCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    /// How the command opens the store: `.existing` unless it may create one.
    static var storeAccess: UpdraftStoreFactory.Access { get }
    func run(_ ops: Operations) async throws
}

extension OperationsCommand {
    static var storeAccess: UpdraftStoreFactory.Access { .existing }

    func run() async throws {
        try await userFacing { try await run(try await global.operations(Self.storeAccess)) }
    }
}

/// A command that reads or changes the fleet through ``FleetClient``: on this machine's
/// data directory, or on a gateway's API with `--server URL --token T` (UPDRAFT_SERVER,
/// UPDRAFT_TOKEN). It prints the same either way.
protocol FleetCommand: AsyncParsableCommand {
    var global: GlobalOptions { get }
    /// How the command opens a local store: `.existing` unless it may create one.
    static var storeAccess: UpdraftStoreFactory.Access { get }
    func run(_ fleet: any FleetClient) async throws
}

extension FleetCommand {
    static var storeAccess: UpdraftStoreFactory.Access { .existing }

    func run() async throws {
        try await userFacing { try await run(try await global.fleet(Self.storeAccess)) }
    }
}
