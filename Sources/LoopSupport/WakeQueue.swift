import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The hand-over point between any thread and an event loop thread (libmosquitto's,
/// libcoap's): closures queue under a mutex, and an eventfd the loop sleeps on wakes it.
/// Shared by the Mosquitto and CoAP wrappers.
///
/// A wake-up is one eventfd write per batch of commands (`wakePending`), and the loop
/// clears it in ``drain()`` under the same lock, so a wake-up for a later command is
/// never swallowed. The eventfd must be non-blocking.
package final class WakeQueue: Sendable {
    private struct State {
        var commands: [@Sendable () -> Void] = []
        var wakePending = false
        var shutdownRequested = false
        /// -1 once the loop closed it, so a late wake-up cannot hit a reused descriptor.
        var wakeFD: Int32
    }

    private let state: Mutex<State>
    /// The eventfd as the loop sleeps on it; valid until ``closeWakeFD()``.
    package let loopWakeFD: Int32

    /// - Parameter wakeFD: a non-blocking eventfd; the queue closes it in ``closeWakeFD()``.
    package init(wakeFD: Int32) {
        state = Mutex(State(wakeFD: wakeFD))
        loopWakeFD = wakeFD
    }

    /// Appends a command and wakes the loop. `false` once shut down.
    package func enqueue(_ command: @escaping @Sendable () -> Void) -> Bool {
        state.withLock { state in
            guard !state.shutdownRequested else { return false }
            state.commands.append(command)
            Self.wakeLocked(&state)
            return true
        }
    }

    /// Makes the loop run an iteration, e.g. to poll a socket for reading again.
    package func wake() {
        state.withLock { Self.wakeLocked(&$0) }
    }

    package func requestShutdown() {
        state.withLock { state in
            state.shutdownRequested = true
            Self.wakeLocked(&state)
        }
    }

    /// Takes the queued commands and clears the wake-up. Loop thread only.
    package func drain() -> (commands: [@Sendable () -> Void], shutdown: Bool) {
        state.withLock { state in
            if state.wakePending, state.wakeFD >= 0 {
                var value: UInt64 = 0
                _ = read(state.wakeFD, &value, MemoryLayout<UInt64>.size)
            }
            state.wakePending = false
            defer { state.commands.removeAll(keepingCapacity: true) }
            return (state.commands, state.shutdownRequested)
        }
    }

    /// Loop thread, at exit.
    package func closeWakeFD() {
        state.withLock { state in
            if state.wakeFD >= 0 {
                close(state.wakeFD)
                state.wakeFD = -1
            }
        }
    }

    /// Written under the lock: one non-blocking syscall, and `closeWakeFD` cannot race it.
    private static func wakeLocked(_ state: inout State) {
        guard !state.wakePending, state.wakeFD >= 0 else { return }
        state.wakePending = true
        var one: UInt64 = 1
        _ = write(state.wakeFD, &one, MemoryLayout<UInt64>.size)
    }
}
