import Foundation
import LoopbackPorts
import Testing
import UpdraftApp
import UpdraftTestSupport

/// README's HTTP API session, pasted: every `$ command` of the blocks marked
/// `<!-- session: http-api -->` runs in one bash against a fresh `updraft serve` (its own
/// data directory, free ports, `updraft` found on PATH from another folder), and prints
/// what README shows — ids, times, hashes and the port aside.
@Suite(.timeLimit(.minutes(4))) struct ReadmeSessionTests {
    @Test func theHTTPAPISessionPrintsWhatREADMEShows() async throws {
        let session = PastedSession(named: "http-api", in: try SourceScan.text("README.md"))
        #expect(session.steps.count >= 20, "README's http-api session has \(session.steps.count) commands")
        let binary = try #require(ProcessRestartTests.updraftBinary, "build the updraft executable first")
        let work = try makeTemporaryDirectory(prefix: "updraft-readme").path
        let httpPort = PortProbe.freePort()
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("UPDRAFT_") }
        environment.merge(servedBroker(port: PortProbe.freePort())) { $1 }
        environment["UPDRAFT_DATA_DIR"] = work + "/data"
        environment["UPDRAFT_HTTP_PORT"] = "\(httpPort)"
        environment["UPDRAFT_COAP_PORT"] = "\(PortProbe.freeUDPPort())"
        environment["UPDRAFT_COAP_SECURE_PORT"] = "\(PortProbe.freeUDPPort())"
        environment["PATH"] = URL(fileURLWithPath: binary).deletingLastPathComponent().path + ":" + (environment["PATH"] ?? "/usr/bin:/bin")
        let keys = try ChildProcess(
            executable: binary, arguments: ["keys", "generate"], outputFile: work + "/keys.log", environment: environment)
        #expect(await keys.waitForExit(timeout: .seconds(60)))
        // Found through PATH from a folder with no Config/ (the broker templates are found
        // from the executable's own folder then).
        let serve = try ChildProcess(
            executable: "/bin/bash", arguments: ["-c", "cd '\(work)' && exec updraft serve --log-level warning"],
            outputFile: work + "/serve.log", environment: environment)
        let client = HTTPTestClient(port: httpPort)
        defer {
            serve.stop()
            killAll([serve], brokerOf: work + "/data")
            try? FileManager.default.removeItem(atPath: work)
        }
        try await eventually(timeout: .seconds(60), "updraft serve's HTTP API") { (try? await client.get("/readyz").status) == 401 }
        await client.shutdown()

        let script = session.script(preamble: "cd '\(work)'\nAPI=http://127.0.0.1:\(httpPort)")
            .replacingOccurrences(of: "http://127.0.0.1:8080", with: "http://127.0.0.1:\(httpPort)")
        try script.write(toFile: work + "/session.sh", atomically: true, encoding: .utf8)
        let bash = try ChildProcess(
            executable: "/bin/bash", arguments: [work + "/session.sh"], outputFile: work + "/session.log", environment: environment)
        #expect(await bash.waitForExit(timeout: .seconds(120)), "the session still ran after 120 s")
        let printed = PastedSession.outputs(try String(contentsOfFile: work + "/session.log", encoding: .utf8), count: session.steps.count)
        for (step, output) in zip(session.steps, printed) {
            if let why = PastedSession.mismatch(step, actual: output) { Issue.record("README.md \(why)") }
        }
    }

    @Test func aSessionThatPrintsSomethingElseIsCaught() {
        let readme = """
            <!-- session: t -->
            ```
            $ echo '{"a" : 1, "at" : "2026-11-26T12:58:23Z"}'
            { "at" : "2026-11-26T12:58:23Z", "a" : 1 }
            $ echo hello
            hello
            ```
            """
        let session = PastedSession(named: "t", in: readme)
        #expect(session.steps.count == 2)
        #expect(PastedSession.mismatch(session.steps[0], actual: #"{"a":1,"at":"2027-01-01T00:00:00Z"}"#) == nil)
        #expect(PastedSession.mismatch(session.steps[0], actual: #"{"a":2,"at":"2027-01-01T00:00:00Z"}"#) != nil)
        #expect(PastedSession.mismatch(session.steps[1], actual: "hello\n") == nil)
        #expect(PastedSession.mismatch(session.steps[1], actual: "goodbye") != nil)
        let outputs = PastedSession.outputs("\n@@pasted-session-step 0\nx\n\n@@pasted-session-step 1\ny\n", count: 2)
        #expect(outputs.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } == ["x", "y"])
    }
}
