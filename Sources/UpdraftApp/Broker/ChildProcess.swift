import CChildProcess
import Foundation

/// A child process with a clean signal state that dies with this process.
///
/// Foundation's Process passes on the parent thread's blocked signals; a mosquitto
/// started that way from a process that blocks SIGTERM (ServiceLifecycle does, to
/// handle it) ignores a polite stop. And a child must not outlive a gateway killed
/// with SIGKILL: it gets `deathSignal` when we die (prctl PR_SET_PDEATHSIG, set in the
/// child between vfork and exec by the C shim in Sources/CChildProcess).
package final class ChildProcess: @unchecked Sendable {
    package let pid: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// - Parameters:
    ///   - environment: the child's environment; `nil` passes on this process's.
    ///   - deathSignal: what the child receives when this process dies.
    package init(
        executable: String, arguments: [String], outputFile: String, environment: [String: String]? = nil,
        deathSignal: Int32 = SIGTERM
    ) throws {
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp: [UnsafeMutablePointer<CChar>?]? = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        let spawned = SpawnThread.shared.run { () -> (Int32, pid_t) in
            var child: pid_t = 0
            let rc = envp.map { updraft_spawn(executable, argv, $0, outputFile, deathSignal, &child) }
                ?? updraft_spawn(executable, argv, environ, outputFile, deathSignal, &child)
            return (rc, child)
        }
        guard spawned.0 == 0 else { throw POSIXError(POSIXErrorCode(rawValue: spawned.0) ?? .EIO) }
        pid = spawned.1
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

/// The parent-death signal fires when the *thread* that forked exits, not the process,
/// and the threads of Swift's cooperative pool come and go. So every child is forked
/// from this one thread, which lives as long as the process.
private final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()
    private let condition = NSCondition()
    private var queue: [@Sendable () -> Void] = []

    private init() {
        let thread = Thread { [self] in loop() }
        thread.name = "updraft-spawn"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty { condition.wait() }
            let job = queue.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the spawn thread and waits for its result.
    func run<T>(_ body: @escaping () -> T) -> T {
        nonisolated(unsafe) let body = body
        nonisolated(unsafe) var result: T?
        let done = DispatchSemaphore(value: 0)
        condition.lock()
        queue.append {
            result = body()
            done.signal()
        }
        condition.signal()
        condition.unlock()
        done.wait()
        return result!
    }
}
