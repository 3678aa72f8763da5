import Foundation
import Logging

/// A logger for tests: quiet unless the environment variable `levelVariable` names a level
/// (`MOSQUITTO_TEST_LOG=debug swift test ...`).
package func makeTestLogger(label: String, levelVariable: String, default level: Logger.Level = .critical) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = ProcessInfo.processInfo.environment[levelVariable].flatMap(Logger.Level.init(rawValue:)) ?? level
    return logger
}
