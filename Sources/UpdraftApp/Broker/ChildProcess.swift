import Foundation

/// A child process started with posix_spawn and a clean signal state. Foundation's
/// Process passes on the parent thread's blocked signals; a mosquitto started that way
/// from a process that blocks SIGTERM (ServiceLifecycle does, to handle it) ignores a
/// polite stop.
package final class ChildProcess: @unchecked Sendable {
    package let pid: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// - Parameter environment: the child's environment; `nil` passes on this process's.
    package init(executable: String, arguments: [String], outputFile: String, environment: [String: String]? = nil) throws {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigfillset(&defaults)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        let rc = envp.map { posix_spawn(&child, executable, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&child, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw POSIXError(POSIXErrorCode(rawValue: rc) ?? .EIO) }
        pid = child
    }

    /// Non-blocking: reaps the child if it exited.
    package var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        if status != nil { return false }
        var raw: Int32 = 0
        let result = waitpid(pid, &raw, WNOHANG)
        if result == pid || result < 0 {
            status = result == pid ? raw : -1
            return false
        }
        return true
    }

    /// The raw wait status once it exited.
    package var terminationStatus: Int32 { lock.withLock { status ?? -1 } }

    package func signal(_ signal: Int32) { if isRunning { kill(pid, signal) } }

    /// SIGTERM, then SIGKILL after `grace`; returns when the child is gone.
    package func stop(grace: TimeInterval = 5) {
        signal(SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while isRunning && Date() < deadline { usleep(10_000) }
        if isRunning {
            kill(pid, SIGKILL)
            while isRunning { usleep(10_000) }
        }
    }

    /// Waits without blocking a thread; `false` when the child still runs after `timeout`.
    package func waitForExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }
}
