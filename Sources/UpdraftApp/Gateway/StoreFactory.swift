import Logging
import UpdraftCore
import UpdraftStore

/// The one place that picks the store implementation from the configuration.
public enum UpdraftStoreFactory {
    public static func open(_ configuration: UpdraftConfiguration, logger: Logger) throws -> any StatusStore {
        try SQLiteStatusStore(path: configuration.resolvedSQLitePath, logger: logger)
    }
}
