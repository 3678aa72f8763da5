/// Polls `condition` every `interval` until it holds or `timeout` passes; returns whether it held.
package func eventually(
    timeout: Duration = .seconds(20), every interval: Duration = .milliseconds(20),
    _ condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: interval)
    }
    return try await condition()
}

/// Waits for `condition`; throws a ``TestTimeout`` naming `what` when it still fails after `timeout`.
package func eventually(
    timeout: Duration = .seconds(30), _ what: String, _ condition: () async throws -> Bool
) async throws {
    guard try await eventually(timeout: timeout, every: .milliseconds(25), condition) else {
        throw TestTimeout(description: "Timed out waiting for \(what).")
    }
}

/// What ``eventually(timeout:_:_:)`` throws.
package struct TestTimeout: Error, CustomStringConvertible {
    package let description: String
}

/// Runs `body`, returning `nil` if it takes longer than `timeout` (the body is cancelled).
package func withTimeout<T: Sendable>(
    _ timeout: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T? {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        let first = try await group.next()!
        group.cancelAll()
        return first
    }
}
