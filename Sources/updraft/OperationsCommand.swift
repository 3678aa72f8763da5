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
