import ServiceLifecycle

/// A loop on a fixed beat, as a service: `step` every `interval` until graceful shutdown
/// (or cancellation), then `final` once. `final` runs inside the service, so the group
/// shuts the next service down only after it (the store is flushed before the feed ends).
struct Beat<State: Sendable>: Service {
    var interval: Duration
    var state: State
    var step: @Sendable (State) async -> State
    var final: @Sendable (State) async -> Void = { _ in }

    func run() async {
        var state = self.state
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: interval)
            state = await step(state)
        }
        await final(state)
    }
}

/// A part that runs until its task is cancelled (a subscription, a server), as a service:
/// graceful shutdown cancels it alone, then `then` runs, not cancelled, before the group
/// goes on to the next service.
struct UntilShutdown: Service {
    var body: @Sendable () async throws -> Void
    var then: @Sendable () async -> Void = {}

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown(body)
        } catch is CancellationError {
            // Shutdown or cancellation: finish below.
        }
        await then()
    }
}
