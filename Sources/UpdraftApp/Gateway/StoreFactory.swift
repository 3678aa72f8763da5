import Logging
import UpdraftCore
import UpdraftStore

/// The one place that picks the store implementation from the configuration.
public enum UpdraftStoreFactory {
    /// How a command may treat the store.
    public enum Access: Sendable {
        /// Make a fresh store when there is none (serve, firmware add, keys generate).
        case create
        /// The store must exist: commands that only read or change what is recorded.
        case existing
        /// `updraft serve`: create when missing, and check every page before serving.
        case serve
    }

    public static func open(_ configuration: UpdraftConfiguration, access: Access = .create, logger: Logger) throws -> any StatusStore {
        let store = try SQLiteStatusStore(path: configuration.resolvedSQLitePath, create: access != .existing, logger: logger)
        if access == .serve { try store.quickCheck() }
        return store
    }
}
