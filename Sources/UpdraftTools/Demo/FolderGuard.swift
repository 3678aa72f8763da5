import Foundation
import UpdraftApp

/// Removes a temporary folder when this process dies however it dies (SIGINT, SIGTERM,
/// a Swift trap, SIGKILL), where no code of ours runs any more: a small `sh` child
/// receives the parent-death signal (see `ChildProcess`), waits for the managed broker
/// (which receives the same signal and writes its persistence file into the folder) to
/// exit, then removes the folder. `dismiss()` ends the guard when we clean up ourselves.
final class FolderGuard: Sendable {
    private let child: ChildProcess

    /// - Parameter pidFile: a process that writes into the folder, waited for first.
    init(directory: String, pidFile: String) throws {
        // $1: the folder, $2: the pid file. The background sleep keeps sh waiting
        // without a busy loop; every exit kills it so nothing outlives the guard.
        let script = """
            trap 'kill $s 2>/dev/null; exit 0' USR1
            trap 'kill $s 2>/dev/null; p=$(cat "$2" 2>/dev/null); \
            if [ -n "$p" ]; then n=0; while kill -0 "$p" 2>/dev/null && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; fi; \
            rm -rf "$1"; exit 0' TERM INT HUP
            while :; do sleep 3600 & s=$!; wait $s; done
            """
        child = try ChildProcess(
            executable: "/bin/sh", arguments: ["-c", script, "updraft-folder-guard", directory, pidFile],
            outputFile: "/dev/null", deathSignal: SIGTERM)
    }

    /// We removed the folder ourselves: stop the guard without it touching anything.
    func dismiss() {
        child.signal(SIGUSR1)
        for _ in 0..<200 where child.isRunning { usleep(10_000) }
        if child.isRunning { child.signal(SIGKILL) }
    }
}
