import Foundation

/// Runs `body` with a fresh directory under the system temporary directory, removed afterwards.
package func withTemporaryDirectory<T>(
    prefix: String = "updraft-test", _ body: (URL) async throws -> T
) async throws -> T {
    let directory = try makeTemporaryDirectory(prefix: prefix)
    defer { try? FileManager.default.removeItem(at: directory) }
    return try await body(directory)
}

/// ``withTemporaryDirectory(prefix:_:)`` for code that takes paths.
package func withTemporaryPath<T>(prefix: String = "updraft-test", _ body: (String) async throws -> T) async throws -> T {
    try await withTemporaryDirectory(prefix: prefix) { try await body($0.path) }
}

/// A new directory under the system temporary directory; the caller removes it.
package func makeTemporaryDirectory(prefix: String = "updraft-test") throws -> URL {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}
